'use strict';
// Everything a function writes becomes `log` frames: console.*, process.stdout/stderr writes, uncaught errors.
// Each entry carries the request id of the event that wrote it (AsyncLocalStorage follows it through
// callbacks and awaits); console.* calls keep their level, raw stdout lines are info, raw stderr lines warning.

const { AsyncLocalStorage } = require('async_hooks');
const fs = require('fs');
const net = require('net');
const { StringDecoder } = require('string_decoder');
const util = require('util');

// Longer lines are cut here already, as the Python worker does (output.MAX_LINE_CHARS).
const MAX_LINE_CHARS = 1024 * 1024;

const requests = new AsyncLocalStorage();
const active = new Set(); // request ids in flight

/** The request id the running code works for: its async context's, else the one event in flight, else null. */
function currentRequest() {
  const rid = requests.getStore();
  if (rid !== undefined) return rid;
  if (active.size === 1) return active.values().next().value;
  return null;
}

// With one event at a time (max_concurrency 1, the default) the event in flight is the one: AsyncLocalStorage,
// whose hooks cost every promise and callback of the process something, is then never switched on.
let tracking = false;

/** Follow request ids through asynchronous code only when events can overlap. */
function track(concurrent) {
  tracking = Boolean(concurrent);
}

/** Run `fn` as part of request `rid`: everything it writes, now or in its callbacks, carries that id. */
function runAs(rid, fn) {
  return tracking ? requests.run(rid, fn) : fn();
}

function cut(text) {
  if (text.length <= MAX_LINE_CHARS) return text;
  return `${text.slice(0, MAX_LINE_CHARS)}… [truncated: ${Buffer.byteLength(text)} bytes in all]`;
}

/** Line-buffers raw writes to one stream; a partial line waits for its end (or for flush). */
class LineBuffer {
  constructor(emit, stream, level) {
    this.emit = emit;
    this.stream = stream;
    this.level = level;
    this.partial = '';
  }

  write(text) {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop();
    if (this.partial.length > MAX_LINE_CHARS) {
      lines.push(this.partial);
      this.partial = '';
    }
    const rid = currentRequest();
    for (const line of lines) this.emit(this.level, this.stream, rid, cut(line));
  }

  flush() {
    if (this.partial) {
      const line = this.partial;
      this.partial = '';
      this.emit(this.level, this.stream, currentRequest(), cut(line));
    }
  }
}

const CONSOLE_LEVELS = {
  debug: ['debug', 'stdout'], log: ['info', 'stdout'], info: ['info', 'stdout'],
  warn: ['warning', 'stderr'], error: ['error', 'stderr'], trace: ['debug', 'stderr'],
};

/**
 * Point console.* and process.stdout/stderr at `emit(level, stream, requestId, message)`.
 * Returns {flush}: sends what raw writes left without a final newline.
 */
function capture(emit) {
  const buffers = {
    stdout: new LineBuffer(emit, 'stdout', 'info'),
    stderr: new LineBuffer(emit, 'stderr', 'warning'),
  };
  for (const name of ['stdout', 'stderr']) {
    const stream = process[name];
    // Replaced on the instance: the real fd is never written, so nothing reaches the gateway's own output.
    stream.write = function write(chunk, encoding, callback) {
      if (typeof encoding === 'function') callback = encoding;
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      buffers[name].write(text);
      if (typeof callback === 'function') process.nextTick(callback);
      return true;
    };
  }
  for (const [method, [level, stream]] of Object.entries(CONSOLE_LEVELS)) {
    // One console call is one entry, however many lines it prints (an object, a stack): as a log record is.
    console[method] = function consoleMethod(...args) {
      let text = util.format(...args);
      if (method === 'trace') text = `Trace: ${text}\n${new Error().stack.split('\n').slice(2).join('\n')}`;
      emit(level, stream, currentRequest(), cut(text));
    };
  }
  return {
    flush: () => {
      for (const drain of drains) drain();
      buffers.stdout.flush();
      buffers.stderr.flush();
    },
  };
}

/**
 * Read the pipes the process sandbox put behind fd 1 and 2 ([out, err]): what subprocesses with inherited
 * stdio and native code write there becomes entries too (stdout info, stderr warning), split into lines.
 */
function readPipes(fds, emit) {
  fds.forEach((fd, i) => {
    const name = i === 0 ? 'stdout' : 'stderr';
    const lines = new LineBuffer(emit, name, i === 0 ? 'info' : 'warning');
    const decoder = new StringDecoder('utf8');
    const pipe = new net.Socket({ fd, readable: true, writable: false });
    pipe.on('data', (chunk) => lines.write(decoder.write(chunk)));
    pipe.on('end', () => lines.flush());
    pipe.on('error', () => {});
    pipe.unref(); // output to read is no reason to keep the process
    // Before an event is answered, what its subprocess wrote is read at once (the pipe is non-blocking), so
    // those lines still carry its request id instead of arriving a tick after it finished.
    const chunk = Buffer.allocUnsafe(65536);
    drains.push(() => {
      for (;;) {
        let n;
        try {
          n = fs.readSync(fd, chunk, 0, chunk.length, null);
        } catch (_) {
          return; // EAGAIN: nothing more right now
        }
        if (n <= 0) return;
        lines.write(decoder.write(chunk.subarray(0, n)));
      }
    });
  });
}

const drains = [];

/** A console-like logger whose entries carry `rid` (context.logger). */
function requestLogger(emit, rid) {
  const logger = {};
  for (const [method, [level]] of Object.entries(CONSOLE_LEVELS)) {
    if (method === 'trace') continue;
    logger[method] = (...args) => emit(level, 'log', rid, cut(util.format(...args)));
  }
  logger.warning = logger.warn;
  return logger;
}

module.exports = { active, capture, currentRequest, readPipes, requestLogger, runAs, track };
