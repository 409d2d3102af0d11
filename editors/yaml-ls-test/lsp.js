// A scripted LSP client for yaml-language-server: starts the server over stdio, configures it
// the way the repository's .vscode/settings.json does, and offers open/hover/complete with the
// diagnostics the server publishes.
'use strict';

const path = require('path');
const { spawn } = require('child_process');
const rpc = require('vscode-jsonrpc/node');

const SERVER = require.resolve('yaml-language-server/bin/yaml-language-server');

function fileUri(p) {
  return 'file://' + path.resolve(p).split(path.sep).map(encodeURIComponent).join('/');
}

class Client {
  /**
   * @param {string} root the repository root (workspace folder)
   * @param {object} yamlSettings the `yaml` settings section the server pulls
   */
  static async start(root, yamlSettings) {
    const child = spawn(process.execPath, [SERVER, '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const connection = rpc.createMessageConnection(
      new rpc.StreamMessageReader(child.stdout),
      new rpc.StreamMessageWriter(child.stdin),
    );
    const client = new Client(child, connection, () => stderr);
    let configured;
    const configuration = new Promise((resolve) => (configured = resolve));
    connection.onRequest('workspace/configuration', (params) => {
      setImmediate(configured);
      return params.items.map((item) => (item.section === 'yaml' ? yamlSettings : null));
    });
    connection.onRequest('client/registerCapability', () => null);
    connection.onRequest('window/workDoneProgress/create', () => null);
    connection.onNotification('window/logMessage', (m) => client.log.push(m.message));
    connection.onNotification('telemetry/event', (e) => client.telemetry.push(e));
    connection.onNotification('textDocument/publishDiagnostics', (p) => client.published(p));
    connection.listen();
    await connection.sendRequest('initialize', {
      processId: process.pid,
      rootUri: fileUri(root),
      workspaceFolders: [{ uri: fileUri(root), name: 'provflow' }],
      capabilities: {
        workspace: { configuration: true, didChangeConfiguration: { dynamicRegistration: true } },
        textDocument: {
          hover: { contentFormat: ['markdown', 'plaintext'] },
          completion: {
            completionItem: { snippetSupport: true, documentationFormat: ['markdown', 'plaintext'] },
          },
          publishDiagnostics: { relatedInformation: true },
        },
      },
    });
    connection.sendNotification('initialized', {});
    connection.sendNotification('workspace/didChangeConfiguration', { settings: null });
    // Documents opened before the server has applied the settings would get no schema: wait
    // until a probe document under definitions/ is validated against it (an unknown field is
    // an error), re-sending it until then. With schema mappings the probe relies on them; without,
    // on a modeline, as the files do.
    await configuration;
    await client.ready(root, Boolean(yamlSettings.schemas));
    return client;
  }

  async ready(root, mapped) {
    const probe = path.join(root, 'definitions', 'editor-test-probe.yaml');
    const modeline = mapped ? '' : '# yaml-language-server: $schema=../schemas/provflow.schema.json\n';
    const text = `${modeline}apiVersion: provflow/v1\nkind: Target\nname: probe\nnot_a_field: 1\n`;
    const deadline = Date.now() + 20000;
    for (;;) {
      const diagnostics = await this.open(probe, text);
      if (diagnostics.some((d) => /not_a_field/.test(d.message))) break;
      if (Date.now() > deadline) {
        throw new Error(`the server never validated ${probe} against the schema: ${JSON.stringify(diagnostics)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.connection.sendNotification('textDocument/didClose', { textDocument: { uri: fileUri(probe) } });
  }

  constructor(child, connection, stderr) {
    this.child = child;
    this.connection = connection;
    this.stderr = stderr;
    this.log = [];
    this.telemetry = [];
    this.diagnostics = new Map();
    this.waiters = new Map();
    this.versions = new Map();
  }

  published(params) {
    this.diagnostics.set(params.uri, params.diagnostics);
    const waiter = this.waiters.get(params.uri);
    if (waiter && (params.version === undefined || params.version === this.versions.get(params.uri))) {
      this.waiters.delete(params.uri);
      waiter(params.diagnostics);
    }
  }

  /** Opens (or replaces) a document and resolves with the diagnostics published for it. */
  open(file, text) {
    const uri = fileUri(file);
    const version = (this.versions.get(uri) || 0) + 1;
    this.versions.set(uri, version);
    const diagnostics = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no diagnostics for ${file} within 20 s`)), 20000);
      this.waiters.set(uri, (d) => {
        clearTimeout(timer);
        resolve(d);
      });
    });
    if (version === 1) {
      this.connection.sendNotification('textDocument/didOpen', {
        textDocument: { uri, languageId: 'yaml', version, text },
      });
    } else {
      this.connection.sendNotification('textDocument/didChange', {
        textDocument: { uri, version },
        contentChanges: [{ text }],
      });
    }
    return diagnostics;
  }

  /** The hover text (markdown) at a 0-based line and character, or null. */
  async hover(file, line, character) {
    const result = await this.connection.sendRequest('textDocument/hover', {
      textDocument: { uri: fileUri(file) },
      position: { line, character },
    });
    if (!result || !result.contents) return null;
    const c = result.contents;
    return typeof c === 'string' ? c : c.value !== undefined ? c.value : JSON.stringify(c);
  }

  /** The completion items at a 0-based line and character. */
  async complete(file, line, character) {
    const result = await this.connection.sendRequest('textDocument/completion', {
      textDocument: { uri: fileUri(file) },
      position: { line, character },
    });
    return Array.isArray(result) ? result : (result && result.items) || [];
  }

  /** Errors the server reported about itself (a thrown exception shows up here). */
  errors() {
    const fromTelemetry = this.telemetry
      .filter((e) => e && e.name && /error/i.test(e.name))
      .map((e) => `${e.name}: ${JSON.stringify(e.properties || e.data || e).slice(0, 400)}`);
    const fromLog = this.log.filter((m) => /error|exception|cannot|failed/i.test(m));
    return fromTelemetry.concat(fromLog);
  }

  async stop() {
    try {
      await this.connection.sendRequest('shutdown');
      this.connection.sendNotification('exit');
    } catch (_) {
      // The server may already be gone.
    }
    this.connection.dispose();
    this.child.kill();
  }
}

module.exports = { Client, fileUri };
