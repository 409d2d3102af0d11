// Structural-only baseline for the provflow compile benchmark.
//
//   node baseline.mjs SCHEMA_JSON DIR [DIR|FILE...]
//
// Loads the whole-file JSON Schema (draft 2020-12), compiles it once with ajv, walks the paths
// recursively for *.yaml / *.yml (sorted, like `provflow compile`), parses every document with
// js-yaml (YAML 1.2 core schema: `yes`/`no`/`on`/`off` stay strings, as in provflow and the
// editor), validates each document with `allErrors: true` and prints one JSON line:
//
//   {"files":..,"docs":..,"invalid_docs":..,"errors":..,"parse_errors":..,
//    "ms":..,"parse_ms":..,"validate_ms":..,"since_start_ms":..}
//
// `ms` is the work after the modules are loaded (schema load + compile + walk + parse +
// validate); `since_start_ms` also counts node's own start-up and module loading. The runner
// script times the whole process from outside, which is what it compares.
//
// Exit code: 0 when every document parsed and validated, 1 when some did not (the first few
// problems go to stderr), 2 on bad usage or an unreadable schema.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import Ajv2020 from "ajv/dist/2020.js";
import yaml from "js-yaml";

const SHOW = 10; // problems printed to stderr

function usage(msg) {
  if (msg) console.error(`baseline.mjs: ${msg}`);
  console.error("usage: node baseline.mjs SCHEMA_JSON DIR [DIR|FILE...]");
  process.exit(2);
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    usage(`cannot read schema ${file}: ${e.message}`);
  }
}

// Does the schema refer to another file (a `$ref` that is not a local `#...` pointer)?
function hasExternalRef(node) {
  if (Array.isArray(node)) return node.some(hasExternalRef);
  if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string" && !v.startsWith("#")) return true;
      if (hasExternalRef(v)) return true;
    }
  }
  return false;
}

function collect(p, out) {
  let st;
  try {
    st = fs.statSync(p);
  } catch (e) {
    usage(`cannot read ${p}: ${e.message}`);
  }
  if (st.isDirectory()) {
    const entries = fs.readdirSync(p, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const child = path.join(p, e.name);
      if (e.isDirectory()) collect(child, out);
      else if (/\.ya?ml$/.test(e.name)) out.push(child);
    }
  } else {
    out.push(p);
  }
}

const t0 = performance.now();
const [schemaPath, ...roots] = process.argv.slice(2);
if (!schemaPath || roots.length === 0) usage();

// --- schema ---------------------------------------------------------------------------------
const ajv = new Ajv2020({
  allErrors: true,
  strict: false, // schemars emits keywords/format names ajv's strict mode would refuse
  validateFormats: false, // structural only
});
const schemaAbs = path.resolve(schemaPath);
const schema = readJson(schemaAbs);
if (!schema.$id) schema.$id = pathToFileURL(schemaAbs).href;
if (hasExternalRef(schema)) {
  // The whole-file schema points into the per-kind schemas next to it: register them.
  const dir = path.dirname(schemaAbs);
  for (const name of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (!name.endsWith(".json") || file === schemaAbs) continue;
    const s = readJson(file);
    if (!s.$id) s.$id = pathToFileURL(file).href;
    ajv.addSchema(s);
  }
}
let validate;
try {
  validate = ajv.compile(schema);
} catch (e) {
  usage(`cannot compile schema ${schemaPath}: ${e.message}`);
}

// --- walk, parse, validate ------------------------------------------------------------------
const files = [];
for (const r of roots) collect(r, files);

let docs = 0;
let invalidDocs = 0;
let errors = 0;
let parseErrors = 0;
let parseMs = 0;
let validateMs = 0;
let shown = 0;

for (const file of files) {
  const text = fs.readFileSync(file, "utf8");
  const tp = performance.now();
  let parsed;
  try {
    parsed = yaml.loadAll(text, null, { schema: yaml.CORE_SCHEMA, filename: file });
  } catch (e) {
    parseMs += performance.now() - tp;
    parseErrors += 1;
    if (shown++ < SHOW) console.error(`${file}: ${e.message.split("\n")[0]}`);
    continue;
  }
  const tv = performance.now();
  parseMs += tv - tp;
  for (let i = 0; i < parsed.length; i++) {
    const doc = parsed[i];
    if (doc === null || doc === undefined) continue; // an empty document
    docs += 1;
    if (!validate(doc)) {
      invalidDocs += 1;
      errors += validate.errors.length;
      for (const err of validate.errors) {
        if (shown++ >= SHOW) break;
        console.error(`${file} doc ${i + 1}: ${err.instancePath || "/"} ${err.message} (${err.schemaPath})`);
      }
    }
  }
  validateMs += performance.now() - tv;
}

const t1 = performance.now();
const round = (x) => Math.round(x * 10) / 10;
console.log(
  JSON.stringify({
    files: files.length,
    docs,
    invalid_docs: invalidDocs,
    errors,
    parse_errors: parseErrors,
    ms: round(t1 - t0),
    parse_ms: round(parseMs),
    validate_ms: round(validateMs),
    since_start_ms: round(t1),
  }),
);
process.exit(errors > 0 || parseErrors > 0 ? 1 : 0);
