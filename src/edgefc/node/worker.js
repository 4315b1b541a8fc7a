'use strict';
// The Node.js worker: connects back to the gateway's worker socket, loads the function's module, serves events
// and carries SDK calls, with the frames and handshake of the Python worker (src/edgefc/worker/main.py).
//
// Started by the sandbox as `node [--max-old-space-size=N] worker.js` with EDGEFC_WORKER_{SOCKET,INSTANCE,
// KEY,CODE} in its environment; those are removed before user code runs.

const net = require('net');
const { performance } = require('perf_hooks');

const { encode, asBuffer, FrameSplitter } = require('./lib/protocol');
const logs = require('./lib/logs');
const { describe, errorBody, stackLines } = require('./lib/errors');
const runtime = require('./lib/runtime');
const { LoadError, callUser, encodeResult, once, resolveRef } = require('./lib/usercode');

const ENV_KEYS = ['EDGEFC_WORKER_SOCKET', 'EDGEFC_WORKER_INSTANCE', 'EDGEFC_WORKER_KEY', 'EDGEFC_WORKER_CODE', 'EDGEFC_WORKER_STDIO'];
// The worker answers a late event itself just before the gateway's deadline, so an event whose handler
// never calls back fails as Timeout without costing the instance; a handler that blocks the event loop is
// still killed by the gateway.
const TIMEOUT_MARGIN_MS = 20;
const TIMED_OUT = Symbol('timed out');

const params = ENV_KEYS.map((key) => {
  const value = process.env[key] || '';
  delete process.env[key];
  return value;
});
const [socketPath, instanceId, key, codeDir, stdioFds] = params;

let sock = null;
let info = null;
let functionInfo = null; // context.function: one frozen object shared by every event
let handler = null;
let ready = false;
let stopping = false;
let exiting = false;
let output = { flush() {} };
const inflight = new Map(); // request id -> finish(err, value)

function send(frame) {
  if (sock !== null && !sock.destroyed) sock.write(encode(frame));
}

// Writes to the gateway never block in Node: a handler printing in a tight loop would queue its lines in
// memory without end. Past this backlog, lines are dropped and counted, and the count is logged once the
// gateway has caught up (the Python worker blocks on its socket instead).
const LOG_BACKLOG_BYTES = 8 * 1024 * 1024;
let droppedLines = 0;

function emitLog(level, stream, requestId, message) {
  try {
    if (sock !== null && sock.writableLength > LOG_BACKLOG_BYTES) {
      droppedLines += 1;
      return;
    }
    if (droppedLines > 0) {
      const dropped = droppedLines;
      droppedLines = 0;
      send({ t: 'log', time: Date.now() / 1000, level: 'warning', stream: 'stderr', request_id: requestId,
        message: `${label()}: ${dropped} log lines dropped: written faster than the gateway could take them` });
    }
    send({ t: 'log', time: Date.now() / 1000, level, stream, request_id: requestId, message });
  } catch (_) {
    // a log line must never take the worker down
  }
}

function label() {
  return `function '${info ? info.name : '?'}'`;
}

/** Flush what is buffered, close the connection, exit with `code` once the frames are written. */
function exit(code) {
  if (exiting) return;
  exiting = true;
  output.flush();
  const done = () => process.exit(code);
  setTimeout(done, 500).unref();
  if (sock !== null && !sock.destroyed) sock.end(done);
  else done();
}

function makeContext(rid, trigger, deadline) {
  let logger = null;
  return {
    requestId: rid,
    function: functionInfo,
    trigger: { type: trigger.type || 'invoke', topic: trigger.topic ?? null, source: trigger.source ?? null },
    getRemainingTimeInMillis: () => Math.max(0, Math.round(deadline - performance.now())),
    // Made on first use: most handlers never log through it, and an event should cost what it uses.
    get logger() {
      if (logger === null) logger = logs.requestLogger(emitLog, rid);
      return logger;
    },
  };
}

function invoke(frame) {
  const rid = frame.id;
  const timeoutMs = Number(frame.deadline_ms ?? info.timeout * 1000);
  const deadline = performance.now() + timeoutMs;
  const ctx = makeContext(rid, frame.trigger || {}, deadline);
  const event = asBuffer(frame.payload) ?? Buffer.alloc(0);
  logs.active.add(rid);
  let timer = null;
  const done = (err, value) => {
    clearTimeout(timer);
    logs.runAs(rid, () => output.flush()); // what the event left unwritten, still under its request id
    inflight.delete(rid);
    logs.active.delete(rid);
    if (err === TIMED_OUT) {
      send({ t: 'error', id: rid, error: { type: 'Timeout', message: `${label()}: the handler neither called back nor returned within ${timeoutMs / 1000} s`, stack: [] } });
    } else if (err !== null) {
      fail(rid, err);
    } else {
      let payload;
      try {
        payload = encodeResult(value);
      } catch (encodeErr) {
        fail(rid, encodeErr);
        return afterEvent();
      }
      send({ t: 'result', id: rid, payload });
    }
    afterEvent();
  };
  const again = () => emitLog('warning', 'stderr', rid,
    `${label()}: the handler answered event ${rid} again after it was answered (a second callback, a callback and a promise, or an answer after the timeout); only the first answer counts`);
  const finish = once(done, again);
  inflight.set(rid, finish);
  timer = setTimeout(() => finish(TIMED_OUT), Math.max(0, timeoutMs - TIMEOUT_MARGIN_MS));
  logs.runAs(rid, () => callUser(handler, [event, ctx], finish));
}

function fail(rid, err) {
  const uncaught = err instanceof UncaughtError;
  const stack = uncaught ? err.lines : stackLines(err);
  const message = uncaught ? err.message : describe(err);
  emitLog('error', 'stderr', rid, (uncaught ? [`${message}\n`, ...stack] : stack).join('').trimEnd());
  send({ t: 'error', id: rid, error: { type: 'Handled', message, stack } });
}

function afterEvent() {
  if (stopping && inflight.size === 0) exit(0);
}

function serveCallback(frame) {
  const op = frame.op || '';
  const fn = runtime.state.callbacks.get(op);
  Promise.resolve()
    .then(() => {
      if (fn === undefined) throw new Error(`this instance has no handler for '${op}'`);
      return fn(frame.args || {});
    })
    .then(
      (value) => ({ t: 'callback_reply', cid: frame.cid, ok: true, value: value ?? null }),
      (err) => ({ t: 'callback_reply', cid: frame.cid, ok: false, error: errorBody((err && err.name) || 'Error', describe(err), err) }),
    )
    .then((reply) => {
      try {
        send(reply);
      } catch (err) {
        send({ t: 'callback_reply', cid: frame.cid, ok: false, error: { type: 'TypeError', message: `callback result cannot be sent: ${err.message}` } });
      }
    });
}

/**
 * For a driver, FC_DRIVER_CONFIG as Link IoT Edge's older driver SDK read it at module load, synchronously:
 * {"config", "deviceList": [{productKey, deviceName, custom}]}. Functions without devices get none.
 */
async function driverConfigEnv() {
  let devices;
  try {
    devices = await runtime.call('device.list', {});
  } catch (_) {
    return; // a gateway without the devices service: nothing to describe
  }
  if (!Array.isArray(devices) || devices.length === 0) return;
  process.env.FC_DRIVER_CONFIG = JSON.stringify({
    config: runtime.state.config,
    deviceList: devices.map((d) => ({ productKey: d.product_key, deviceName: d.device_name, custom: d.config ?? null })),
  });
}

async function load(init) {
  const f = init.function;
  info = { name: f.name, handler: f.handler, memory: Number(f.memory), timeout: Number(f.timeout), version: String(f.version ?? ''), initializer: f.initializer ?? null };
  runtime.state.info = info;
  functionInfo = Object.freeze({ ...info });
  runtime.state.config = init.config ?? null;
  logs.track(Number(init.max_concurrency ?? 1) > 1);
  await driverConfigEnv();
  handler = await resolveRef(codeDir, info.handler, label());
  if (info.initializer) {
    const initFn = await resolveRef(codeDir, info.initializer, label());
    const ctx = makeContext('init', { type: 'init' }, performance.now() + info.timeout * 1000);
    await new Promise((resolve, reject) => {
      logs.active.add('init');
      const finish = once((err) => {
        logs.active.delete('init');
        if (err === null) resolve();
        else reject(new LoadError(`${label()}: the initializer '${info.initializer}' failed: ${describe(err)}`, err));
      }, () => emitLog('warning', 'stderr', 'init', `${label()}: the initializer called back more than once`));
      logs.runAs('init', () => callUser(initFn, [ctx], finish));
    });
  }
}

function initFailed(err) {
  const stack = err instanceof LoadError ? err.userStack : stackLines(err);
  const message = err instanceof LoadError ? err.message : `${label()}: ${describe(err)}`;
  emitLog('error', 'stderr', 'init', [message, ...stack.map((l) => l.trimEnd())].join('\n'));
  send({ t: 'init_error', error: { type: 'Handled', message, stack } });
  exit(1);
}

function onInit(init) {
  runtime.state.send = send;
  output = logs.capture(emitLog);
  if (stdioFds) logs.readPipes(stdioFds.split(',').map(Number), emitLog);
  try {
    process.chdir(codeDir);
  } catch (_) {
    // the module path is absolute; a code dir we cannot enter only changes relative file access
  }
  load(init).then(() => {
    ready = true;
    output.flush();
    send({ t: 'ready' });
  }, initFailed);
}

function dispatch(frame) {
  switch (frame.t) {
    case 'invoke':
      if (stopping) {
        send({ t: 'error', id: frame.id, error: { type: 'Unhandled', message: `${label()}: the instance is stopping`, stack: [] } });
      } else {
        invoke(frame);
      }
      break;
    case 'reply':
      runtime.resolve(frame);
      break;
    case 'callback':
      serveCallback(frame);
      break;
    case 'stop':
      stopping = true;
      afterEvent();
      break;
    case 'init':
      onInit(frame);
      break;
    default:
      break;
  }
}

// An exception nothing caught (a throw in a timer or callback, a rejected promise nobody handled). When it
// comes from an event's own asynchronous code (its async context says which), that event fails with it and
// the instance serves on: an abandoned event is what Node loses here. From code of no event (a module-level
// timer) the process state is unknown, as Node itself decides: the instance exits and the gateway replaces
// it (a continuous function restarts with backoff).
process.on('uncaughtException', (err, origin) => {
  if (exiting) return;
  const what = origin === 'unhandledRejection' ? 'a promise rejection nobody handled' : 'an uncaught exception';
  if (!ready) {
    initFailed(new LoadError(`${label()}: ${what} while loading: ${describe(err)}`, err));
    return;
  }
  const rid = logs.currentRequest();
  const stack = stackLines(err);
  const finish = rid === null ? undefined : inflight.get(rid);
  if (finish !== undefined) {
    finish(new UncaughtError(`${label()}: ${what} in the event's asynchronous code: ${describe(err)}`, stack));
    return;
  }
  const where = rid === null ? 'outside any event' : `after event ${rid} was answered`;
  const message = `${label()}: ${what} ${where} ended the instance: ${describe(err)}`;
  emitLog('error', 'stderr', rid, [message, ...stack.map((l) => l.trimEnd())].join('\n'));
  exit(1);
});

class UncaughtError extends Error {
  constructor(message, stack) {
    super(message);
    this.name = 'UncaughtError';
    this.lines = stack;
  }
}

process.on('SIGTERM', () => exit(0));

function main() {
  if (!socketPath) {
    process.stderr.write('edgefc node worker: EDGEFC_WORKER_SOCKET is not set; the gateway starts this program\n');
    process.exit(2);
  }
  sock = net.createConnection(socketPath);
  sock.setNoDelay?.(true);
  const splitter = new FrameSplitter();
  sock.on('connect', () => {
    send({ t: 'hello', instance: instanceId, key, pid: process.pid });
  });
  sock.on('data', (chunk) => {
    let frames;
    try {
      frames = splitter.push(chunk);
    } catch (err) {
      emitLog('error', 'stderr', null, `edgefc node worker: ${err.message}`);
      exit(1);
      return;
    }
    for (const frame of frames) dispatch(frame);
  });
  sock.on('drain', () => {
    if (droppedLines > 0) emitLog('warning', 'stderr', null, `${label()}: the log backlog is written out`);
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    runtime.failAll();
    if (!exiting) {
      exiting = true;
      process.exit(0);
    }
  });
}

main();
