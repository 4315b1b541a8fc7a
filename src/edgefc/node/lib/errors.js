'use strict';
// How a failure of user code is described to the gateway: {type, message, stack}, the stack cut down to the
// user's own frames (no worker or node:internal frames), as lines ending in "\n" like Python's tracebacks.

const path = require('path');

const WORKER_DIR = path.dirname(__dirname) + path.sep;

function isInternal(line) {
  if (line.includes(WORKER_DIR)) return true; // a frame or a "Require stack" entry of the worker itself
  return line.trimStart().startsWith('at ') && (line.includes('(node:') || line.includes(' node:'));
}

/** "TypeError: message" for an Error, the value itself as text for anything else thrown or called back. */
function describe(err) {
  if (err instanceof Error) {
    const name = err.name || (err.constructor && err.constructor.name) || 'Error';
    return err.message ? `${name}: ${err.message}` : name;
  }
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch (_) {
    return String(err);
  }
}

/** The stack of `err` as lines, without frames of the worker or of Node's internals. */
function stackLines(err) {
  if (!(err instanceof Error) || typeof err.stack !== 'string') return [`${describe(err)}\n`];
  const lines = err.stack.split('\n').filter((line) => !isInternal(line));
  return lines.map((line) => `${line}\n`);
}

/** The error dict of a protocol frame. */
function errorBody(type, message, err) {
  return { type, message, stack: err === undefined ? [] : stackLines(err) };
}

module.exports = { describe, errorBody, stackLines };
