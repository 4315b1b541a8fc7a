'use strict';
// The running instance as function code and the SDK see it: SDK calls to the gateway, the handlers for the
// gateway's requests (driver callbacks), the function's settings. One per process; the worker fills it in.

class RemoteError extends Error {
  /** The gateway refused an SDK call; `error` is the {type, message, code?, stack?} it sent. */
  constructor(error) {
    super((error && error.message) || 'error');
    this.name = 'RemoteError';
    this.error = error || {};
  }
}

const state = {
  send: null, // (frame) => void, set once connected
  info: null, // {name, handler, memory, timeout, version, initializer}
  config: null,
  nextCid: 0,
  pending: new Map(), // cid -> {resolve, reject}
  callbacks: new Map(), // op -> async (args) => value
};

function current() {
  if (state.send === null) {
    throw new Error('the edgefc SDK works only inside a function running on an edgefc gateway');
  }
  return state;
}

/** Make an SDK call through the gateway: resolves with its value, rejects with RemoteError on refusal. */
function call(op, args) {
  const rt = current();
  rt.nextCid += 1;
  const cid = rt.nextCid;
  return new Promise((resolve, reject) => {
    rt.pending.set(cid, { resolve, reject });
    try {
      rt.send({ t: 'call', cid, op, args });
    } catch (err) {
      rt.pending.delete(cid);
      reject(err);
    }
  });
}

/**
 * Send an SDK call the gateway serves without answering (`publish` at QoS 0: fire and forget). A refusal goes
 * into the function's log under `rid`. Throws when the connection is gone.
 */
function cast(op, args, rid) {
  current().send({ t: 'cast', op, args, rid: rid ?? null });
}

/** A `reply` frame from the gateway. */
function resolve(frame) {
  const waiter = state.pending.get(frame.cid);
  if (waiter === undefined) return;
  state.pending.delete(frame.cid);
  if (frame.ok) waiter.resolve(frame.value);
  else waiter.reject(new RemoteError(frame.error));
}

/** The gateway went away: every call still waiting fails. */
function failAll() {
  for (const waiter of state.pending.values()) {
    waiter.reject(new RemoteError({ type: 'Unavailable', message: 'gateway connection lost' }));
  }
  state.pending.clear();
}

module.exports = { RemoteError, call, cast, current, failAll, resolve, state };
