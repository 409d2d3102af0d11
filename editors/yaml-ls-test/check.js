#!/usr/bin/env node
// Checks schemas/ the way an editor uses them: the real yaml-language-server, over stdio,
// configured with the repository's .vscode/settings.json. Run by tests/editor_schemas.rs:
//
//   node editors/yaml-ls-test/check.js REPO_ROOT
//
// For every kind, a document with every field of the kind's schema is generated from the
// schema itself, and the server must give: on each field's key, that field's own description
// (not its type's or a value's); on each enum value, that value's description first; on a new
// line of each mapping, every field not written yet; on an empty enum-valued field, every value;
// in a new scenario step, every step kind. Then: structural errors at the right line in a second
// `---` document, zero diagnostics on every file of definitions/, and a schema for every
// document of definitions/ from its modelines alone (editors without the settings).
//
// Prints one line per failure and exits 1 if there is any.
'use strict';

const fs = require('fs');
const path = require('path');
const { Client } = require('./lsp');

const root = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));
const failures = [];
const fail = (msg) => failures.push(msg);
let checks = 0;

// ------------------------------------------------------------------------------------------
// Schemas

function readJson(p) {
  return JSON.parse(fs.readFileSync(p, 'utf8'));
}

const fileSchema = readJson(path.join(root, 'schemas', 'provflow.schema.json'));
const kindSchemas = fs
  .readdirSync(path.join(root, 'schemas'))
  .filter((f) => f.endsWith('.schema.json') && f !== 'provflow.schema.json')
  .sort()
  .map((f) => {
    const schema = readJson(path.join(root, 'schemas', f));
    return { file: f, kind: schema.properties.kind.const, schema };
  });

/** A schema with its `$ref` resolved; the referring schema's own keywords win. */
function deref(rootSchema, s) {
  if (!s || !s.$ref) return s;
  const name = s.$ref.replace('#/$defs/', '');
  const target = rootSchema.$defs && rootSchema.$defs[name];
  if (!target) throw new Error(`unresolved ${s.$ref}`);
  const own = Object.assign({}, s);
  delete own.$ref;
  return Object.assign({}, deref(rootSchema, target), own);
}

/** The non-null branch of an optional field, or the schema itself. */
function nonNull(rootSchema, s) {
  s = deref(rootSchema, s);
  if (s.anyOf && s.anyOf.some((b) => b.type === 'null')) {
    return deref(rootSchema, s.anyOf.find((b) => b.type !== 'null'));
  }
  return s;
}

// Values for string fields with a pattern; a new pattern must be added here.
const PATTERN_SAMPLES = {
  '^[0-9]+(s|m|h|d)$': '30m',
  '^[A-Za-z_][A-Za-z0-9_]*$': 'SOME_VAR',
};

// ------------------------------------------------------------------------------------------
// A document tree generated from a schema, rendered as block YAML with positions

let nextId = 0;

function scalar(value, schema, fieldPath) {
  return { type: 'scalar', value, schema, path: fieldPath, id: nextId++ };
}

/** A value for `s` at `fieldPath`, with every field of every mapping inside. */
function generate(rootSchema, s, fieldPath) {
  s = nonNull(rootSchema, s);
  if (s.enum) return scalar(s.enum[0], s, fieldPath);
  if (s.const !== undefined) return scalar(s.const, s, fieldPath);
  if (s.anyOf) {
    // An untagged union (`Type` or `{ type, ... }`): the long form covers more fields.
    const long = s.anyOf.map((b) => deref(rootSchema, b)).find((b) => b.properties);
    return generate(rootSchema, long || s.anyOf[0], fieldPath);
  }
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  if (type === 'object' || s.properties) {
    const map = { type: 'map', entries: [], schema: s, path: fieldPath, id: nextId++ };
    for (const [key, prop] of Object.entries(s.properties || {})) {
      map.entries.push({ key, prop, value: generate(rootSchema, prop, `${fieldPath}.${key}`) });
    }
    const extra = s.additionalProperties && deref(rootSchema, s.additionalProperties);
    if (extra && typeof extra === 'object') {
      const names = s.propertyNames && deref(rootSchema, s.propertyNames);
      const key = names && names.enum ? names.enum[0] : 'some_name';
      map.entries.push({ key, prop: null, value: generate(rootSchema, extra, `${fieldPath}.<${key}>`) });
    }
    return map;
  }
  if (type === 'array') {
    const items = deref(rootSchema, s.items);
    const seq = { type: 'seq', items: [], schema: s, path: fieldPath, id: nextId++ };
    const variants = items.oneOf ? items.oneOf : [items];
    variants.forEach((v) => seq.items.push(generate(rootSchema, v, `${fieldPath}[]`)));
    seq.stepKinds = items.oneOf ? items.oneOf.map((b) => Object.keys(b.properties)[0]) : null;
    return seq;
  }
  if (type === 'string') {
    if (s.pattern) {
      if (!(s.pattern in PATTERN_SAMPLES)) throw new Error(`${fieldPath}: no sample for pattern ${s.pattern}`);
      return scalar(PATTERN_SAMPLES[s.pattern], s, fieldPath);
    }
    return scalar('some text', s, fieldPath);
  }
  if (type === 'boolean') return scalar(true, s, fieldPath);
  if (type === 'integer' || type === 'number') return scalar(s.minimum !== undefined ? s.minimum : 1, s, fieldPath);
  throw new Error(`${fieldPath}: cannot generate a value for ${JSON.stringify(s).slice(0, 200)}`);
}

function yamlScalar(v) {
  if (v === CURSOR) return '';
  if (typeof v !== 'string') return String(v);
  return /^[A-Za-z_][A-Za-z0-9_ ./-]*$/.test(v) && !/ $/.test(v) ? v : JSON.stringify(v);
}

const CURSOR = Symbol('cursor');

/**
 * Renders a node as lines; `marks` get {line, col} filled in for keys, scalars and the cursor.
 * Returns an array of { text, marks: [{ col, mark }] }.
 */
function render(node, indent) {
  const pad = ' '.repeat(indent);
  if (node.type === 'map') {
    const lines = [];
    if (node.entries.length === 0) return [{ text: pad + '{}', marks: [], inline: '{}' }];
    for (const e of node.entries) {
      if (e.cursor) {
        lines.push({ text: pad, marks: [{ col: indent, mark: e.cursor }] });
        continue;
      }
      const keyMark = { col: indent, mark: { kind: 'key', entry: e, node } };
      const v = e.value;
      if (v.type === 'scalar') {
        const text = `${pad}${yamlScalar(e.key)}: ${yamlScalar(v.value)}`;
        const valueCol = indent + yamlScalar(e.key).length + 2;
        lines.push({ text, marks: [keyMark, { col: valueCol, mark: { kind: 'value', node: v } }] });
      } else if (v.type === 'map' && v.entries.length === 0) {
        lines.push({ text: `${pad}${yamlScalar(e.key)}: {}`, marks: [keyMark] });
      } else {
        lines.push({ text: `${pad}${yamlScalar(e.key)}:`, marks: [keyMark] });
        lines.push(...render(v, indent + 2));
      }
    }
    return lines;
  }
  if (node.type === 'seq') {
    const lines = [];
    for (const item of node.items) {
      if (item === CURSOR || item.cursor) {
        lines.push({ text: pad + '- ', marks: [{ col: indent + 2, mark: item.cursor || 'cursor' }] });
        continue;
      }
      if (item.type === 'scalar') {
        lines.push({ text: `${pad}- ${yamlScalar(item.value)}`, marks: [{ col: indent + 2, mark: { kind: 'value', node: item } }] });
        continue;
      }
      const inner = render(item, indent + 2);
      inner[0] = Object.assign({}, inner[0], { text: `${pad}- ${inner[0].text.slice(indent + 2)}` });
      lines.push(...inner);
    }
    return lines;
  }
  throw new Error('render: a scalar has no lines of its own');
}

function toText(tree) {
  const lines = render(tree, 0);
  const marks = [];
  lines.forEach((l, line) => l.marks.forEach((m) => marks.push(Object.assign({ line, col: m.col }, m.mark === 'cursor' ? { kind: 'cursor' } : m.mark))));
  return { text: lines.map((l) => l.text).join('\n') + '\n', marks };
}

function walk(node, visit) {
  visit(node);
  if (node.type === 'map') node.entries.forEach((e) => e.value && walk(e.value, visit));
  if (node.type === 'seq') node.items.forEach((i) => i && i.type && walk(i, visit));
}

function clone(tree) {
  // Structural copy keeping schema references (schemas are never mutated).
  if (tree.type === 'map') return Object.assign({}, tree, { entries: tree.entries.map((e) => Object.assign({}, e, { value: e.value && clone(e.value) })) });
  if (tree.type === 'seq') return Object.assign({}, tree, { items: tree.items.map(clone) });
  return Object.assign({}, tree);
}

function findById(tree, id) {
  let found = null;
  walk(tree, (n) => {
    if (n.id === id) found = n;
  });
  return found;
}

// ------------------------------------------------------------------------------------------
// Hover text

/** The hover's description: the markdown between the title and "Allowed Values"/"Source", unescaped. */
function hoverDescription(hover) {
  if (!hover) return null;
  let text = hover;
  if (text.startsWith('#### ')) text = text.slice(text.indexOf('\n') + 1);
  text = text.split(/\n\nAllowed Values:|\n\nSource: \[/)[0];
  return normalize(text.replace(/\\([\\`*_{}[\]#+!])/g, '$1'));
}

function normalize(s) {
  return String(s).replace(/\s+/g, ' ').trim();
}

function firstAllowedValue(hover) {
  const m = /Allowed Values:\s*\n\n\* `([^`]*)`(?:: ([^\n]*))?/.exec(hover || '');
  return m ? { value: m[1].replace(/^"|"$/g, ''), description: normalize(m[2] || '') } : null;
}

function show(s) {
  return JSON.stringify(s === null || s === undefined ? null : String(s).slice(0, 300));
}

// ------------------------------------------------------------------------------------------
// The checks

function readSettings() {
  const settings = readJson(path.join(root, '.vscode', 'settings.json'));
  const yaml = { schemaStore: { enable: false } };
  for (const [k, v] of Object.entries(settings)) {
    if (k.startsWith('yaml.')) yaml[k.slice('yaml.'.length)] = v;
  }
  return yaml;
}

function definitionFiles() {
  const out = [];
  const visit = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (/\.ya?ml$/.test(e.name)) out.push(p);
    }
  };
  visit(path.join(root, 'definitions'));
  return out.sort();
}

const rel = (p) => path.relative(root, p);

async function checkKind(client, { kind, schema }) {
  // A file the settings map onto the schema; never written to disk.
  const file = path.join(root, 'definitions', '__editor_test__', `${kind}.yaml`);
  const tree = generate(schema, schema, kind);
  const { text, marks } = toText(tree);
  const where = (line) => `${rel(file)}:${line + 1}`;

  const diagnostics = await client.open(file, text);
  if (diagnostics.length) {
    fail(`${kind}: the generated document with every field is not valid for the server (fix check.js or the schema):\n${text}\n` +
      diagnostics.map((d) => `  line ${d.range.start.line + 1}: ${d.message}`).join('\n'));
    return;
  }

  // Hover on every field's key, and on every enum value.
  for (const m of marks) {
    if (m.kind === 'key' && m.entry.prop) {
      checks++;
      const own = [m.entry.prop.description];
      if (m.node === tree && (m.entry.key === 'kind' || m.entry.key === 'apiVersion')) {
        own.push(fileSchema.properties[m.entry.key].description); // the file schema's own field
      }
      const fieldPath = `${m.node.path}.${m.entry.key}`;
      if (!own[0]) {
        fail(`${fieldPath}: the schema gives this field no description`);
        continue;
      }
      const hover = await client.hover(file, m.line, m.col + 1);
      const got = hoverDescription(hover);
      if (!own.some((d) => normalize(d) === got)) {
        fail(`${where(m.line)}: hover on field \`${fieldPath}\` shows ${show(got)}, expected the field's own description ${show(own[0])}`);
      }
    }
    if (m.kind === 'value' && m.node.schema.enum && m.node.schema.markdownEnumDescriptions) {
      checks++;
      const s = m.node.schema;
      const expected = normalize(s.markdownEnumDescriptions[s.enum.indexOf(m.node.value)]);
      const hover = await client.hover(file, m.line, m.col + 1);
      const first = firstAllowedValue(hover);
      if (!first || first.value !== String(m.node.value) || first.description !== expected) {
        fail(`${where(m.line)}: hover on value \`${m.node.value}\` of \`${m.node.path}\` should list it first with ${show(expected)}; got ${show(hover)}`);
      }
    }
  }

  // Completion: each mapping reduced to its required fields offers the others on a new line;
  // each enum-valued field left empty offers every value; a new scenario step offers every kind.
  const variants = [];
  walk(tree, (n) => {
    if (n.type === 'map' && n.schema.properties) {
      const required = n.schema.required || [];
      const expected = Object.keys(n.schema.properties).filter((k) => !required.includes(k));
      if (expected.length) variants.push({ what: `fields of \`${n.path}\``, id: n.id, expected, make: (c) => {
        c.entries = c.entries.filter((e) => required.includes(e.key));
        c.entries.push({ cursor: 'cursor' });
      } });
    }
    const names = n.type === 'map' && n.schema.propertyNames && deref(schema, n.schema.propertyNames);
    if (names && names.enum) {
      variants.push({ what: `keys of \`${n.path}\``, id: n.id, expected: names.enum, make: (c) => {
        c.entries = [{ cursor: 'cursor' }];
      } });
    }
    if (n.type === 'scalar' && n.schema.enum && n.schema.enum.length > 1) {
      variants.push({ what: `values of \`${n.path}\``, id: n.id, expected: n.schema.enum.map(String), make: (c) => {
        c.value = CURSOR;
      }, cursorOnValue: true });
    }
    if (n.type === 'seq' && n.stepKinds) {
      variants.push({ what: `step kinds in a new item of \`${n.path}\``, id: n.id, expected: n.stepKinds, make: (c) => {
        c.items.push({ cursor: 'cursor' });
      } });
    }
  });
  for (const v of variants) {
    checks++;
    const copy = clone(tree);
    const target = findById(copy, v.id);
    v.make(target);
    let rendered;
    if (v.cursorOnValue) {
      rendered = toText(copy);
      const m = rendered.marks.find((k) => k.kind === 'value' && k.node === target);
      rendered.cursor = { line: m.line, col: m.col };
    } else {
      rendered = toText(copy);
      const m = rendered.marks.find((k) => k.kind === 'cursor');
      rendered.cursor = { line: m.line, col: m.col };
    }
    await client.open(file, rendered.text);
    const items = await client.complete(file, rendered.cursor.line, rendered.cursor.col);
    const labels = new Set(items.map((i) => String(i.label).replace(/^"|"$/g, '')));
    const missing = v.expected.filter((e) => !labels.has(String(e)));
    if (missing.length) {
      fail(`${where(rendered.cursor.line)}: completion of the ${v.what} misses ${missing.join(', ')} (offered: ${[...labels].join(', ') || 'nothing'})`);
    }
  }
}

async function checkStructuralErrors(client) {
  const file = path.join(root, 'definitions', '__editor_test__', 'errors.yaml');
  const lines = [
    'apiVersion: provflow/v1',
    'kind: Target',
    'name: first',
    'dialect: sqlite',
    'queries: q',
    '---',
    'apiVersion: provflow/v1',
    'kind: Target',
    'name: second',
    'dialect: sqlite',
    'queries: q',
    'max_concurrent_calls: many', // line 12: a string where a number goes
    'dialekt: postgres', // line 13: an unknown field
    '---',
    'apiVersion: provflow/v1',
    'kind: Scenario',
    'name: third',
    'steps:',
    '  - expect_account: { process: P, user: U, status: Provisioned }',
    '  - expect_account: { process: P, user: U, status: Provisionned }', // line 20: not a status
  ];
  const expected = [12, 13, 20];
  checks++;
  const diagnostics = await client.open(file, lines.join('\n') + '\n');
  const got = [...new Set(diagnostics.map((d) => d.range.start.line + 1))].sort((a, b) => a - b);
  if (JSON.stringify(got) !== JSON.stringify(expected)) {
    fail(`${rel(file)}: structural errors expected on lines ${expected.join(', ')}, reported on ${got.join(', ') || 'none'}:\n` +
      diagnostics.map((d) => `  line ${d.range.start.line + 1}: ${d.message}`).join('\n'));
  }
}

async function checkDefinitions(client) {
  for (const file of definitionFiles()) {
    checks++;
    const diagnostics = await client.open(file, fs.readFileSync(file, 'utf8'));
    for (const d of diagnostics) {
      fail(`${rel(file)}:${d.range.start.line + 1}:${d.range.start.character + 1}: false positive: ${d.message}`);
    }
  }
}

/** Without the settings, every document still gets its schema from its own modeline. */
async function checkModelines(client) {
  for (const file of definitionFiles()) {
    const text = fs.readFileSync(file, 'utf8');
    await client.open(file, text);
    const lines = text.split('\n');
    let doc = 1;
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].startsWith('---')) doc++;
      if (!lines[i].startsWith('kind:')) continue;
      checks++;
      const hover = await client.hover(file, i, 1);
      if (!hover) fail(`${rel(file)}:${i + 1}: document ${doc} gets no schema without the editor settings (a modeline after its \`---\`?)`);
    }
  }
}

async function main() {
  const started = Date.now();
  const settings = readSettings();
  const client = await Client.start(root, settings);
  try {
    for (const k of kindSchemas) await checkKind(client, k);
    await checkStructuralErrors(client);
    await checkDefinitions(client);
  } finally {
    for (const e of client.errors()) fail(`the server reported an error: ${e}`);
    await client.stop();
  }
  const bare = await Client.start(root, { validate: true, hover: true, completion: true, schemaStore: { enable: false } });
  try {
    await checkModelines(bare);
  } finally {
    for (const e of bare.errors()) fail(`the server reported an error: ${e}`);
    await bare.stop();
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const kinds = kindSchemas.map((k) => k.kind).join(', ');
  if (failures.length) {
    console.log(`${failures.length} failure(s) in ${checks} checks (${seconds} s, kinds: ${kinds}):\n`);
    console.log(failures.join('\n'));
    process.exit(1);
  }
  console.log(`ok: ${checks} checks against yaml-language-server ${require('yaml-language-server/package.json').version} in ${seconds} s (kinds: ${kinds})`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(2);
});
