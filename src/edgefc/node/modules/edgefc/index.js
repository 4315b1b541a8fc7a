'use strict';
// The SDK for Node.js functions: `const fc = require('edgefc')` (CONTRACT §1, the Node.js side of edgefc.sdk).
// Every call travels over the worker's own socket to the gateway and returns a Promise.

const runtime = require('../../lib/runtime');
const logs = require('../../lib/logs');
const { asBuffer } = require('../../lib/protocol');

class FunctionError extends Error {
  /** An invoked function failed, or could not be invoked: `type` is Handled, Unhandled, Timeout, NotFound, ... */
  constructor(type, message, stack) {
    super(`${type}: ${message}`);
    this.name = 'FunctionError';
    this.type = type;
    this.stack_lines = Array.isArray(stack) ? stack : [];
    this.remoteMessage = message;
  }
}

function toFunctionError(err) {
  if (err instanceof runtime.RemoteError) {
    const e = err.error;
    return new FunctionError(e.type || 'Error', e.message || '', e.stack);
  }
  return err;
}

/** A payload as bytes: Buffer as is, string as UTF-8, anything else as JSON. */
function asBytes(payload) {
  if (payload === undefined || payload === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(payload)) return payload;
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  return Buffer.from(JSON.stringify(payload), 'utf8');
}

/**
 * Publish into the gateway's router as source `function:<this function>`. `options` is the QoS or {qos, confirm}.
 * With qos 1 it resolves once the router durably accepted the message, and rejects with FunctionError when it
 * refuses. With qos 0 it resolves once the message is on its way: a refusal is written into the function's log
 * instead (`confirm: true` waits for the answer, as qos 1 does).
 */
function publish(topic, payload, options) {
  const qos = typeof options === 'number' ? options : Number((options && options.qos) || 0);
  const args = { topic: String(topic), payload: asBytes(payload), qos };
  if (qos === 0 && !(options && options.confirm)) {
    // At most once, as MQTT's QoS 0: no answer to wait for; a refusal goes into the function's log.
    try {
      runtime.cast('publish', args, logs.currentRequest());
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve(undefined);
  }
  return runtime.call('publish', args)
    .then(() => undefined, (err) => { throw toFunctionError(err); });
}

/**
 * Invoke another function: `type` 'sync' (default) resolves with its result Buffer, 'async' with the
 * invocation id. `timeout` is in seconds. Rejects with FunctionError (type, message, stack_lines).
 */
function invoke(name, payload, options = {}) {
  const type = options.type || options.invocationType || 'sync';
  if (type !== 'sync' && type !== 'async') {
    return Promise.reject(new TypeError(`invoke: type must be 'sync' or 'async', got ${JSON.stringify(type)}`));
  }
  const args = { name: String(name), payload: asBytes(payload), type, timeout: options.timeout ?? null };
  return runtime.call('invoke', args).then((value) => asBuffer(value), (err) => { throw toFunctionError(err); });
}

/** This function's `config` from the manifest (for a driver, its driver-level config). */
function config() {
  return runtime.current().config;
}

module.exports = {
  FunctionError,
  asBytes,
  config,
  invoke,
  publish,
  get things() { return require('./things'); },
  get driver() { return require('./driver'); },
  codes: require('./codes'),
};
