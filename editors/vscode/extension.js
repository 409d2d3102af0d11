// @ts-check
// The provflow extension: starts `provflow lsp` (crates/lsp) over stdio for the definition files
// of the workspace, through the official client library. Everything the editor shows (PF
// diagnostics, definition, references, hover, completion, rename, quick fixes) comes from the
// server; this file only says how to start it and which documents it is sent.
'use strict';

const path = require('path');
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

/**
 * The documents the server is sent: YAML files on disk under a `definitions/` folder. The server
 * compiles every document it is sent as part of the bundle, so other YAML (CI workflows, compose
 * files) stays out. Files it is not sent still count: it reads the whole `definitions/` of the
 * workspace folder from disk.
 * @type {import('vscode-languageclient').DocumentSelector}
 */
const DOCUMENT_SELECTOR = [{ scheme: 'file', language: 'yaml', pattern: '**/definitions/**' }];

/** @type {LanguageClient | undefined} */
let client;

/**
 * The binary to start, from `provflow.path`: a bare name is looked up on PATH, a relative path is
 * read from the first workspace folder, `${workspaceFolder}` is replaced by that folder.
 * @param {string | undefined} configured
 * @param {string | undefined} folder the first workspace folder, if any
 * @returns {string}
 */
function resolveCommand(configured, folder) {
  let command = (configured || '').trim() || 'provflow';
  if (folder) {
    command = command.split('${workspaceFolder}').join(folder);
    const bareName = !command.includes('/') && !command.includes('\\');
    if (!bareName && !path.isAbsolute(command)) {
      command = path.resolve(folder, command);
    }
  }
  return command;
}

/**
 * How the client starts the server (in the first workspace folder, the client's default). No
 * `transport`: the client would then append `--stdio`, which `provflow lsp` does not take; an
 * executable's stdin and stdout are the channel anyway.
 * @returns {{ run: import('vscode-languageclient/node').Executable, debug: import('vscode-languageclient/node').Executable }}
 */
function serverOptions() {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const command = resolveCommand(vscode.workspace.getConfiguration('provflow').get('path'), folder);
  /** @type {import('vscode-languageclient/node').Executable} */
  const executable = { command, args: ['lsp'] };
  return { run: executable, debug: executable };
}

/** @returns {import('vscode-languageclient').LanguageClientOptions} */
function clientOptions() {
  return {
    documentSelector: DOCUMENT_SELECTOR,
    // The server reads definitions and install scripts from disk: a change there, made outside
    // the editor or in a file that is not open, makes it read them again.
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/definitions/**') },
  };
}

async function start() {
  const server = serverOptions();
  // The id `provflow` makes the client read `provflow.trace.server`.
  client = new LanguageClient('provflow', 'provflow', server, clientOptions());
  try {
    await client.start();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    void vscode.window.showErrorMessage(
      `provflow: could not start \`${server.run.command} lsp\` (${message}). Set "provflow.path" to the provflow binary.`,
    );
  }
}

async function stop() {
  const running = client;
  client = undefined;
  if (running) {
    await running.stop().catch(() => undefined);
    await running.dispose().catch(() => undefined);
  }
}

/** @type {Promise<void>} */
let restarting = Promise.resolve();

/** Stops the client and starts a new one, after any restart still under way. */
function restart() {
  restarting = restarting.then(async () => {
    await stop();
    await start();
  });
  return restarting;
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('provflow.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('provflow.path')) {
        void restart();
      }
    }),
  );
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate, resolveCommand, DOCUMENT_SELECTOR };
