'use strict';
// The gateway's frame protocol (src/edgefc/worker/protocol.py): a 4-byte big-endian length, then one msgpack
// map with a `t` key. Binary fields are msgpack bin (Buffer here); text is msgpack str.

const { Encoder, Decoder } = require('@msgpack/msgpack');

const MAX_FRAME = 64 * 1024 * 1024;

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/** One frame as bytes ready to write. Throws what msgpack throws for a value it cannot encode. */
function encode(frame) {
  const body = encoder.encode(frame);
  const out = Buffer.allocUnsafe(4 + body.byteLength);
  out.writeUInt32BE(body.byteLength, 0);
  out.set(body, 4);
  return out;
}

/** A msgpack bin (Uint8Array) as a Buffer over the same memory; anything else as given. */
function asBuffer(value) {
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  return value;
}

/** Splits a byte stream into frames; `push(chunk)` returns the frames it completed. Throws on a bad frame. */
class FrameSplitter {
  constructor() {
    this.chunks = [];
    this.size = 0;
    this.need = 4; // bytes before the next frame can be complete: chunks are joined only once they are there
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames = [];
    if (this.size < this.need) return frames;
    const buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
    let pos = 0;
    this.need = 4;
    while (buf.length - pos >= 4) {
      const length = buf.readUInt32BE(pos);
      if (length > MAX_FRAME) throw new Error(`frame of ${length} bytes exceeds ${MAX_FRAME}`);
      if (buf.length - pos - 4 < length) {
        this.need = 4 + length;
        break;
      }
      const frame = decoder.decode(buf.subarray(pos + 4, pos + 4 + length));
      if (frame === null || typeof frame !== 'object' || typeof frame.t !== 'string') {
        throw new Error("frame is not a map with a 't' key");
      }
      frames.push(frame);
      pos += 4 + length;
    }
    // Decoded bin values are views of `buf`: the rest is copied so they never share memory with later reads.
    const rest = pos === buf.length ? null : Buffer.from(buf.subarray(pos));
    this.chunks = rest ? [rest] : [];
    this.size = rest ? rest.length : 0;
    return frames;
  }
}

module.exports = { encode, asBuffer, FrameSplitter, MAX_FRAME };
