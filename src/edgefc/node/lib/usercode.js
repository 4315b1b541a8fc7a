'use strict';
// User code as the worker meets it: loading a module and its export, calling a handler whichever way it
// answers (callback, promise, return value), and turning its result into bytes.

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const { describe, stackLines } = require('./errors');

/** A function that passes its first call to `done(err, value)` and every later one to `again()`. */
function once(done, again) {
  let settled = false;
  return (err, value) => {
    if (settled) {
      again();
      return;
    }
    settled = true;
    done(err, value);
  };
}

/**
 * Call user function `fn(...args, callback)` and hand its outcome to `finish(err, value)`, whichever way it
 * answers: the callback, a returned promise, or (with no callback parameter) a plain return value.
 */
function callUser(fn, args, finish) {
  const failure = (err) => (err === undefined || err === null ? new Error(`threw ${err}`) : err);
  let returned;
  try {
    returned = fn(...args, (err, value) => finish(err === undefined || err === null ? null : err, value));
  } catch (err) {
    finish(failure(err));
    return;
  }
  if (returned !== null && typeof returned === 'object' && typeof returned.then === 'function') {
    returned.then((value) => finish(null, value), (err) => finish(failure(err)));
  } else if (fn.length <= args.length) {
    finish(null, returned);
  }
}

function encodeResult(value) {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  let text;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new TypeError(`the handler returned ${typeName(value)}, which is not a Buffer, string or JSON: ${err.message}`);
  }
  if (text === undefined) throw new TypeError(`the handler returned ${typeName(value)}, which is not a Buffer, string or JSON`);
  return Buffer.from(text, 'utf8');
}

function typeName(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value.constructor && value.constructor.name) || 'object';
  return typeof value;
}

/** The file a module path names: <base>.js, .cjs, .mjs or <base>/index.js (as the deploy check looks). */
function moduleFile(base) {
  const candidates = [`${base}.js`, `${base}.cjs`, `${base}.mjs`, path.join(base, 'index.js')];
  return candidates.find((candidate) => fs.existsSync(candidate)) ?? null;
}

/** Resolve "dir.module.export" to that export of the module's file under `codeDir`; ES modules are imported.
 * Throws LoadError, whose message starts with `who` (the function).
 */
async function resolveRef(codeDir, ref, who) {
  const dot = ref.lastIndexOf('.');
  const moduleName = ref.slice(0, dot);
  const exportName = ref.slice(dot + 1);
  const file = moduleFile(path.join(codeDir, ...moduleName.split('.')));
  if (file === null) {
    const shown = moduleName.split('.').join('/');
    throw new LoadError(`${who}: the handler '${ref}' needs ${shown}.js in the function's code, which has no such file`);
  }
  const shown = path.relative(codeDir, file);
  let mod;
  try {
    mod = file.endsWith('.mjs') ? await import(pathToFileURL(file).href) : require(file);
  } catch (err) {
    if (!(err && err.code === 'ERR_REQUIRE_ESM')) {
      throw new LoadError(`${who}: loading ${shown} failed: ${describeLoad(err, codeDir)}`, err);
    }
    try {
      mod = await import(pathToFileURL(file).href); // a .js file of a "type": "module" package
    } catch (esmErr) {
      throw new LoadError(`${who}: loading ${shown} failed: ${describeLoad(esmErr, codeDir)}`, esmErr);
    }
  }
  let fn = mod !== null && mod !== undefined ? mod[exportName] : undefined;
  if (fn === undefined && mod && mod.default && typeof mod.default === 'object') fn = mod.default[exportName];
  if (typeof fn !== 'function') {
    const names = mod ? Object.keys(mod).filter((k) => typeof mod[k] === 'function') : [];
    const hint = names.length ? ` (functions it exports: ${names.slice(0, 8).join(', ')})` : ' (it exports no functions)';
    const what = fn === undefined ? 'does not export' : `exports a ${typeName(fn)} as`;
    throw new LoadError(`${who}: ${shown} ${what} '${exportName}'; write exports.${exportName} = function (event, context, callback) {...}${hint}`);
  }
  return fn;
}

function describeLoad(err, codeDir) {
  if (err instanceof SyntaxError) {
    // Node puts "file:line" and the offending source above the message in the stack: show where.
    const where = String(err.stack || '').split('\n')[0];
    return `${describe(err)} (${where.startsWith(codeDir) ? path.relative(codeDir, where) : where})`;
  }
  return describe(err).split('\n')[0];
}

class LoadError extends Error {
  constructor(message, cause) {
    super(message);
    this.name = 'LoadError';
    this.userStack = cause === undefined ? [] : stackLines(cause);
  }
}

module.exports = { LoadError, callUser, encodeResult, once, resolveRef, typeName };
