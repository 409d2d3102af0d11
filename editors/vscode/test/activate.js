// @ts-check
// Activates the extension outside VS Code, with `vscode` replaced by test/fake-vscode.js, and
// checks what it asks of the client library and that the server it describes really serves:
//
//   node test/activate.js EXTENSION_DIR PROVFLOW_BINARY WORKSPACE
//
// EXTENSION_DIR holds the extension's package.json (this folder, or the `extension/` folder of
// an unpacked .vsix, whose node_modules must then be complete); WORKSPACE is a copy of the
// repository's definitions/ in a `definitions/` folder (tests/vscode_extension.rs makes it).
//
// 1. The manifest: entry script, activation on a `definitions` folder, the settings.
// 2. Activation with the defaults: one LanguageClient (the real class, its start() stubbed: no
//    editor to start features in), id `provflow` (so `provflow.trace.server` is read), server
//    `provflow` with args exactly ["lsp"] and no transport (a transport would append --stdio),
//    documents: YAML files on disk under definitions/, a watcher on definitions/.
// 3. Changing `provflow.path` restarts the client with the new binary.
// 4. That client's own createMessageTransports() (the code VS Code runs to start the server)
//    starts PROVFLOW_BINARY; over it the test initializes, opens a file, edits it so that
//    another file breaks (PF401 in the process that uses a renamed query), and shuts down:
//    the server must answer, publish the diagnostic and exit 0.
// Prints `ok: ...` and exits 0, or prints what failed and exits 1.
'use strict';

const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const fake = require('./fake-vscode');

const [extensionDir, binary, workspace] = process.argv.slice(2).map((a) => path.resolve(a));
if (!extensionDir || !binary || !workspace) {
  console.error('usage: node test/activate.js EXTENSION_DIR PROVFLOW_BINARY WORKSPACE');
  process.exit(2);
}
const DEADLINE_MS = 30_000;

/** @type {(e: Error) => void} */
let failEarly = () => undefined;
/** Rejected when the server exits before it is asked to: every wait below ends then. */
const earlyExit = new Promise((_, reject) => (failEarly = reject));
earlyExit.catch(() => undefined);

/** @template T @param {Promise<T>} promise @param {string} what @returns {Promise<T>} */
function within(promise, what) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${DEADLINE_MS} ms`)), DEADLINE_MS);
  });
  return /** @type {Promise<T>} */ (Promise.race([promise, timeout, earlyExit]).finally(() => clearTimeout(timer)));
}

/** @param {string} p */
function fileUri(p) {
  return 'file://' + p.split(path.sep).map(encodeURIComponent).join('/');
}

async function main() {
  fake.install();
  const manifest = JSON.parse(fs.readFileSync(path.join(extensionDir, 'package.json'), 'utf8'));

  // 1. The manifest.
  const entry = require.resolve(path.resolve(extensionDir, manifest.main));
  assert.deepEqual(manifest.activationEvents, ['workspaceContains:definitions']);
  const properties = manifest.contributes.configuration.properties;
  assert.equal(properties['provflow.path'].default, 'provflow');
  assert.deepEqual(properties['provflow.trace.server'].enum, ['off', 'messages', 'verbose']);
  assert.deepEqual(manifest.capabilities.untrustedWorkspaces.restrictedConfigurations, ['provflow.path']);
  assert.ok(manifest.engines.vscode, 'engines.vscode');

  // The real client library, from the extension's own node_modules, with its LanguageClient
  // subclassed to record what it is built with.
  const libraryPath = require.resolve('vscode-languageclient/node', { paths: [extensionDir] });
  const library = require(libraryPath);
  /** @type {{ id: string, name: string, server: any, options: any, client: any, started: boolean, stopped: boolean }[]} */
  const clients = [];
  class RecordingClient extends library.LanguageClient {
    /** @param {any[]} args */
    constructor(...args) {
      // @ts-ignore the four-argument form
      super(...args);
      const [id, name, server, options] = args;
      this.record = { id, name, server, options, client: this, started: false, stopped: false };
      clients.push(this.record);
    }
    async start() {
      this.record.started = true;
    }
    async stop() {
      this.record.stopped = true;
    }
    async dispose() {
      this.record.stopped = true;
    }
  }
  require.cache[libraryPath] = Object.assign(new (require('module'))(libraryPath), {
    filename: libraryPath,
    loaded: true,
    exports: { ...library, LanguageClient: RecordingClient },
  });

  // 2. Activation with the defaults.
  fake.setWorkspaceFolder(workspace);
  const extension = require(entry);
  /** @type {{ subscriptions: { dispose(): unknown }[] }} */
  const context = { subscriptions: [] };
  await within(extension.activate(context), 'activate');
  assert.equal(clients.length, 1, 'activate builds one client');
  const first = clients[0];
  assert.ok(first.started, 'activate starts the client');
  assert.equal(first.id, 'provflow');
  for (const mode of ['run', 'debug']) {
    const executable = first.server[mode];
    assert.equal(executable.command, 'provflow', `${mode}: the default binary`);
    assert.deepEqual(executable.args, ['lsp'], `${mode}: args`);
    assert.equal(executable.transport, undefined, `${mode}: no transport (it would append --stdio)`);
  }
  assert.deepEqual(JSON.parse(JSON.stringify(first.options.documentSelector)), [
    { scheme: 'file', language: 'yaml', pattern: '**/definitions/**' },
  ]);
  const watchers = fake.calls.filter((c) => c.what === 'workspace.createFileSystemWatcher');
  assert.deepEqual(watchers.map((c) => c.args[0]), ['**/definitions/**']);
  assert.ok(fake.commandHandlers.has('provflow.restartServer'), 'the restart command is registered');
  const declared = manifest.contributes.commands.map((/** @type {{ command: string }} */ c) => c.command);
  assert.deepEqual(declared, [...fake.commandHandlers.keys()], 'every registered command is declared');

  // `provflow.path`: bare names stay for PATH; paths are read from the workspace folder.
  assert.equal(extension.resolveCommand('provflow', workspace), 'provflow');
  assert.equal(extension.resolveCommand('  ', workspace), 'provflow');
  assert.equal(extension.resolveCommand('target/debug/provflow', workspace), path.join(workspace, 'target/debug/provflow'));
  assert.equal(extension.resolveCommand('${workspaceFolder}/bin/provflow', workspace), path.join(workspace, 'bin/provflow'));
  assert.equal(extension.resolveCommand('/opt/provflow', workspace), '/opt/provflow');

  // 3. A new binary in the settings restarts the client with it.
  fake.settings['provflow.path'] = binary;
  await within(fake.changeSettings(['provflow.path']), 'restart on a settings change');
  assert.equal(clients.length, 2, 'the change builds a new client');
  assert.ok(first.stopped, 'the old client is stopped');
  const second = clients[1];
  assert.ok(second.started);
  assert.equal(second.server.run.command, binary);
  await within(fake.changeSettings(['provflow.trace.server']), 'another setting');
  assert.equal(clients.length, 2, 'only provflow.path restarts');

  // 4. The client library starts the server as VS Code would, and it serves.
  const transports = await within(second.client.createMessageTransports('utf-8'), 'starting the server');
  const serverProcess = second.client._serverProcess;
  assert.ok(serverProcess && serverProcess.pid, 'the library started a process');
  assert.deepEqual(serverProcess.spawnargs, [binary, 'lsp'], 'the process is `provflow lsp`');
  let shuttingDown = false;
  const exited = new Promise((resolve) =>
    serverProcess.once('exit', (/** @type {number | null} */ code, /** @type {string | null} */ signal) => {
      resolve(code);
      if (!shuttingDown) {
        // The library copies the server's stderr to the client's output channel.
        const said = second.client.outputChannel.text;
        failEarly(new Error(`provflow lsp exited (code ${code}, signal ${signal}) before shutdown; it wrote:\n${said}`));
      }
    }),
  );
  const connection = library.createMessageConnection(transports.reader, transports.writer);
  /** @type {Map<string, any[]>} */
  const published = new Map();
  /** @type {(() => void)[]} */
  const waiting = [];
  connection.onNotification('textDocument/publishDiagnostics', (/** @type {any} */ p) => {
    published.set(p.uri, p.diagnostics);
    waiting.splice(0).forEach((w) => w());
  });
  connection.listen();
  /** @param {string} uri @param {(d: any[]) => boolean} done */
  const diagnosticsUntil = (uri, done) =>
    within(
      new Promise((resolve) => {
        const check = () => {
          const list = published.get(uri);
          if (list && done(list)) resolve(list);
          else waiting.push(check);
        };
        check();
      }),
      `the diagnostics of ${uri}`,
    );

  const root = fileUri(workspace);
  const init = await within(
    connection.sendRequest('initialize', {
      processId: process.pid,
      rootUri: root,
      workspaceFolders: [{ uri: root, name: path.basename(workspace) }],
      capabilities: { textDocument: { publishDiagnostics: { relatedInformation: true } } },
    }),
    'initialize',
  );
  for (const capability of ['definitionProvider', 'referencesProvider', 'hoverProvider', 'completionProvider', 'renameProvider']) {
    assert.ok(/** @type {any} */ (init).capabilities[capability], `the server announces ${capability}`);
  }
  connection.sendNotification('initialized', {});

  // As in tests/lsp.rs: rename a query in one file; the process that uses it is flagged.
  const queriesPath = path.join(workspace, 'definitions/dbum/queries-postgres.yaml');
  const queries = fileUri(queriesPath);
  const process_ = fileUri(path.join(workspace, 'definitions/dbum/process-postgres.yaml'));
  const text = fs.readFileSync(queriesPath, 'utf8');
  assert.ok(text.includes('  CREATE_PASSWORD_USER:'), 'the fixture has the query');
  connection.sendNotification('textDocument/didOpen', {
    textDocument: { uri: queries, languageId: 'yaml', version: 1, text: text.replace('  CREATE_PASSWORD_USER:', '  CREATE_PASSWORD_USERS:') },
  });
  const found = await diagnosticsUntil(process_, (d) => d.some((x) => x.code === 'PF401'));
  connection.sendNotification('textDocument/didChange', {
    textDocument: { uri: queries, version: 2 },
    contentChanges: [{ text }],
  });
  await diagnosticsUntil(process_, (d) => d.length === 0);

  shuttingDown = true;
  await within(connection.sendRequest('shutdown'), 'shutdown');
  connection.sendNotification('exit');
  const code = await within(exited, 'the server exiting');
  assert.equal(code, 0, 'provflow lsp exits 0 after exit');
  connection.dispose();

  await within(Promise.resolve(extension.deactivate()), 'deactivate');
  assert.ok(second.stopped, 'deactivate stops the client');
  context.subscriptions.forEach((d) => d.dispose());

  const pf401 = found.find((/** @type {any} */ d) => d.code === 'PF401');
  console.log(
    `ok: activated from ${path.relative(process.cwd(), entry) || entry}; client "provflow" runs \`provflow lsp\` ` +
      `for ${JSON.stringify(first.options.documentSelector)}; restarted on provflow.path; ` +
      `the real server answered initialize and published PF401 at line ${pf401.range.start.line + 1} of process-postgres.yaml ` +
      `(${fake.unknown.size} members of the vscode API the library reached were inert stand-ins)`,
  );
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  },
);
