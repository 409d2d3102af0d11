// @ts-check
// A stand-in for the `vscode` module, which exists only inside VS Code: enough of the API for
// extension.js and for vscode-languageclient to load, build a client and start its server.
// Every call the extension makes is recorded in `calls`. What the stand-in does not define is
// an inert value (a callable, constructible proxy), so that a module reaching for more of the
// API at load time still loads; `unknown` lists what was reached that way.
'use strict';

const path = require('path');

/** @type {{ what: string, args: unknown[] }[]} */
const calls = [];
/** @type {Set<string>} */
const unknown = new Set();
/** @type {Record<string, unknown>} the settings, by full key (`provflow.path`) */
const settings = {};
/** @type {((e: { affectsConfiguration(section: string): boolean }) => unknown)[]} */
const configurationListeners = [];
/** @type {Map<string, (...args: unknown[]) => unknown>} */
const commandHandlers = new Map();

/** @param {string} name @returns {any} */
function inert(name) {
  /** @type {Map<PropertyKey, unknown>} */
  const members = new Map();
  return new Proxy(function () {}, {
    get(_target, key) {
      if (key === 'then' || typeof key === 'symbol') return undefined;
      if (!members.has(key)) {
        unknown.add(`${name}.${String(key)}`);
        members.set(key, inert(`${name}.${String(key)}`));
      }
      return members.get(key);
    },
    apply() {
      unknown.add(`${name}()`);
      return inert(`${name}()`);
    },
    construct() {
      unknown.add(`new ${name}`);
      return /** @type {object} */ (inert(`new ${name}`));
    },
  });
}

class Disposable {
  /** @param {() => unknown} [onDispose] */
  constructor(onDispose) {
    this.onDispose = onDispose;
  }
  /** @param {{ dispose(): unknown }[]} items */
  static from(...items) {
    return new Disposable(() => items.forEach((d) => d && d.dispose()));
  }
  dispose() {
    if (this.onDispose) this.onDispose();
    this.onDispose = undefined;
  }
}

class EventEmitter {
  constructor() {
    /** @type {((e: unknown) => unknown)[]} */
    this.listeners = [];
    /** @param {(e: unknown) => unknown} listener */
    this.event = (listener) => {
      this.listeners.push(listener);
      return new Disposable(() => (this.listeners = this.listeners.filter((l) => l !== listener)));
    };
  }
  /** @param {unknown} e */
  fire(e) {
    this.listeners.slice().forEach((l) => l(e));
  }
  dispose() {
    this.listeners = [];
  }
}

class Uri {
  /** @param {string} scheme @param {string} fsPath */
  constructor(scheme, fsPath) {
    this.scheme = scheme;
    this.fsPath = fsPath;
    this.path = fsPath;
  }
  /** @param {string} p */
  static file(p) {
    return new Uri('file', path.resolve(p));
  }
  /** @param {string} value */
  static parse(value) {
    const m = /^file:\/\/(.*)$/.exec(value);
    return m ? new Uri('file', decodeURIComponent(m[1])) : new Uri(value.split(':')[0], value);
  }
  toString() {
    return `${this.scheme}://${this.fsPath.split('/').map(encodeURIComponent).join('/')}`;
  }
}

/** @param {string} what @param {unknown} result */
function recorder(what, result) {
  return (/** @type {unknown[]} */ ...args) => {
    calls.push({ what, args });
    return typeof result === 'function' ? result(...args) : result;
  };
}

function outputChannel(/** @type {string} */ name) {
  let text = '';
  return {
    name,
    /** @param {string} s */
    append: (s) => (text += s),
    /** @param {string} s */
    appendLine: (s) => (text += s + '\n'),
    replace: (/** @type {string} */ s) => (text = s),
    clear: () => (text = ''),
    show: () => undefined,
    hide: () => undefined,
    dispose: () => undefined,
    get text() {
      return text;
    },
    // A LogOutputChannel's level and methods, for clients that ask for one.
    logLevel: 0,
    onDidChangeLogLevel: () => new Disposable(),
    trace: (/** @type {string} */ s) => (text += s + '\n'),
    debug: (/** @type {string} */ s) => (text += s + '\n'),
    info: (/** @type {string} */ s) => (text += s + '\n'),
    warn: (/** @type {string} */ s) => (text += s + '\n'),
    error: (/** @type {string} */ s) => (text += s + '\n'),
  };
}

/** @type {{ uri: Uri, name: string, index: number }[] | undefined} */
let workspaceFolders;

const api = {
  version: '1.91.0',
  Disposable,
  EventEmitter,
  Uri,
  CancellationError: class CancellationError extends Error {},
  LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
  env: { appName: 'fake', language: 'en', openExternal: recorder('env.openExternal', Promise.resolve(true)) },
  commands: {
    registerCommand: recorder('commands.registerCommand', (/** @type {string} */ id, /** @type {any} */ handler) => {
      commandHandlers.set(id, handler);
      return new Disposable(() => commandHandlers.delete(id));
    }),
  },
  window: {
    createOutputChannel: recorder('window.createOutputChannel', outputChannel),
    showErrorMessage: recorder('window.showErrorMessage', Promise.resolve(undefined)),
    showWarningMessage: recorder('window.showWarningMessage', Promise.resolve(undefined)),
    showInformationMessage: recorder('window.showInformationMessage', Promise.resolve(undefined)),
    activeTextEditor: undefined,
    visibleTextEditors: [],
    onDidChangeVisibleTextEditors: () => new Disposable(),
    tabGroups: { all: [], onDidChangeTabs: () => new Disposable() },
  },
  workspace: {
    get workspaceFolders() {
      return workspaceFolders;
    },
    textDocuments: [],
    notebookDocuments: [],
    /** @param {string} [section] */
    getConfiguration: recorder('workspace.getConfiguration', (/** @type {string | undefined} */ section) => ({
      /** @param {string} key @param {unknown} [fallback] */
      get(key, fallback) {
        const full = section ? `${section}.${key}` : key;
        return full in settings ? settings[full] : fallback;
      },
    })),
    onDidChangeConfiguration: recorder('workspace.onDidChangeConfiguration', (/** @type {any} */ listener) => {
      configurationListeners.push(listener);
      return new Disposable();
    }),
    createFileSystemWatcher: recorder('workspace.createFileSystemWatcher', () => ({
      onDidCreate: () => new Disposable(),
      onDidChange: () => new Disposable(),
      onDidDelete: () => new Disposable(),
      dispose: () => undefined,
    })),
  },
};

/** @param {object} target @param {string} name */
function withFallback(target, name) {
  return new Proxy(target, {
    get(t, key) {
      if (key in t) {
        const value = /** @type {any} */ (t)[key];
        const plain = value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype;
        return plain ? withFallback(value, `${name}.${String(key)}`) : value;
      }
      // Marked as an ES module, so that TypeScript's `__importStar` hands the library this
      // proxy itself rather than a copy of the members defined here.
      if (key === '__esModule') return name === 'vscode';
      if (key === 'then' || typeof key === 'symbol') return undefined;
      return /** @type {any} */ (inert(`${name}.${String(key)}`));
    },
  });
}

const vscode = withFallback(api, 'vscode');

/** Makes `require('vscode')` return the stand-in, from any module. */
function install() {
  const Module = /** @type {any} */ (require('module'));
  const id = path.join(__dirname, '<vscode>');
  const entry = new Module(id);
  entry.filename = id;
  entry.loaded = true;
  entry.exports = vscode;
  Module._cache[id] = entry;
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (/** @type {string} */ request, /** @type {unknown[]} */ ...rest) {
    return request === 'vscode' ? id : resolve.call(this, request, ...rest);
  };
}

module.exports = {
  install,
  vscode,
  calls,
  unknown,
  settings,
  commandHandlers,
  /** @param {string | undefined} folder */
  setWorkspaceFolder(folder) {
    workspaceFolders = folder ? [{ uri: Uri.file(folder), name: path.basename(folder), index: 0 }] : undefined;
  },
  /** Tells the listeners that `changed` settings changed. @param {string[]} changed */
  async changeSettings(changed) {
    const event = { affectsConfiguration: (/** @type {string} */ s) => changed.some((c) => c === s || c.startsWith(s + '.')) };
    await Promise.all(configurationListeners.map((l) => l(event)));
  },
};
