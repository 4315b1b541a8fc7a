'use strict';
// Driver side of devices: `fc.driver` (src/edgefc/sdk/driver.py). A driver is a continuous function that
// registers its devices, reports for them, and answers the gateway's get/set/service requests.

const runtime = require('../../lib/runtime');
const codes = require('./codes');
const { DeviceError, ThingError, gatewayCall } = require('./things');

const clients = new Map(); // "pk/dn" -> ThingClient
const CALLBACK_OPS = { 'device.get': 'onGet', 'device.set': 'onSet', 'device.service': 'onService' };

/** The devices the applied deployment assigns to this driver: [{productKey, deviceName, config, tags}]. */
function devices() {
  return gatewayCall('device.list', {}).then((found) => found.map((d) => ({
    productKey: d.product_key, deviceName: d.device_name, config: d.config ?? null, tags: d.tags || {},
  })));
}

function installCallbacks() {
  const callbacks = runtime.current().callbacks;
  for (const op of Object.keys(CALLBACK_OPS)) {
    if (callbacks.has(op)) continue;
    callbacks.set(op, (args) => {
      const client = clients.get(`${args.product_key}/${args.device_name}`);
      if (client === undefined) {
        return { code: codes.DEVICE_UNREGISTERED, message: `this driver instance has no client for /${args.product_key}/${args.device_name}` };
      }
      return client._answer(op, args);
    });
  }
}

class ThingClient {
  /**
   * One device as its driver sees it. `handlers`: onGet(keys) -> object, onSet(properties) -> object|undefined,
   * onService(name, args) -> object|undefined; each may return a promise and refuses by throwing DeviceError.
   */
  constructor(productKey, deviceName, handlers = {}) {
    this.productKey = String(productKey);
    this.deviceName = String(deviceName);
    this.onGet = handlers.onGet;
    this.onSet = handlers.onSet;
    this.onService = handlers.onService;
  }

  get key() { return `${this.productKey}/${this.deviceName}`; }

  _args(more = {}) { return { product_key: this.productKey, device_name: this.deviceName, ...more }; }

  /** Register with the gateway and go online; rejects with ThingError (NotFound when not assigned to this driver). */
  registerAndOnline() {
    installCallbacks();
    clients.set(this.key, this);
    return gatewayCall('device.register', this._args()).then(() => undefined, (err) => {
      if (clients.get(this.key) === this) clients.delete(this.key);
      throw err;
    });
  }

  online() { return gatewayCall('device.online', this._args()).then(() => undefined); }

  offline() { return gatewayCall('device.offline', this._args()).then(() => undefined); }

  /** Report property values: stored and routed on /sys/{pk}/{dn}/thing/event/property/post. */
  reportProperties(properties) {
    return gatewayCall('device.report_properties', this._args({ properties: { ...properties } })).then(() => undefined);
  }

  /** Report an event, routed on /sys/{pk}/{dn}/thing/event/{name}/post. */
  reportEvent(name, params = {}) {
    return gatewayCall('device.report_event', this._args({ name: String(name), params: { ...params } })).then(() => undefined);
  }

  unregister() {
    return gatewayCall('device.unregister', this._args()).then(() => undefined).finally(() => {
      if (clients.get(this.key) === this) clients.delete(this.key);
    });
  }

  /** The device's thing model text: `tsl` or `tsl_ext_info` from its config. */
  thingModel(kind = 'tsl') { return gatewayCall('device.tsl', this._args({ kind })); }

  /** Serve a gateway request: resolves {code: 0, value} or {code, message}; rejects when the callback threw. */
  _answer(op, args) {
    const name = CALLBACK_OPS[op];
    const fn = this[name];
    if (typeof fn !== 'function') {
      const refusal = {
        onGet: [codes.PROPERTY_NOT_EXIST, 'offers no properties to get'],
        onSet: [codes.PROPERTY_READ_ONLY, 'has no settable properties'],
        onService: [codes.SERVICE_NOT_EXIST, `has no service '${args.name}'`],
      }[name];
      return { code: refusal[0], message: `/${this.key} ${refusal[1]}` };
    }
    const timeoutMs = Number(args.timeout || 5) * 1000 + 100;
    const run = () => {
      if (op === 'device.get') return fn((args.keys || []).map(String));
      if (op === 'device.set') return fn({ ...(args.properties || {}) });
      return fn(String(args.name), { ...(args.args || {}) });
    };
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ code: codes.TIMEOUT, message: `/${this.key}: the callback did not answer in time` }), timeoutMs);
    });
    const answer = Promise.resolve().then(run).then((value) => {
      if (value === undefined || value === null) value = {};
      if (typeof value !== 'object' || Array.isArray(value)) {
        throw new TypeError(`the ${op.slice(7)} callback of /${this.key} returned ${Array.isArray(value) ? 'an array' : typeof value}, not an object`);
      }
      return { code: codes.SUCCESS, value };
    }, (err) => {
      if (err instanceof DeviceError) return { code: err.code || codes.UNKNOWN, message: err.message };
      throw err;
    });
    return Promise.race([answer, late]).finally(() => clearTimeout(timer));
  }
}

/** The driver's own `config` from the manifest. */
function config() { return runtime.current().config; }

module.exports = { DeviceError, ThingClient, ThingError, config, devices };
