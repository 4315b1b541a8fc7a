'use strict';
// Application side of devices: `fc.things` reads and writes devices through their drivers (src/edgefc/sdk/things.py).

const runtime = require('../../lib/runtime');
const codes = require('./codes');

const BY_ERROR_TYPE = { NotFound: codes.DEVICE_UNREGISTERED, Unavailable: codes.SERVICE_UNREACHABLE, Timeout: codes.TIMEOUT, ValidationError: codes.INVALID_PARAM, BadRequest: codes.INVALID_PARAM, Handled: codes.UNKNOWN };

class ThingError extends Error {
  /** A device operation failed: `type` names the failure, `code` is its Link IoT Edge number. */
  constructor(message, code = codes.UNKNOWN, type = 'ThingError', stack = []) {
    super(message);
    this.name = type;
    this.type = type;
    this.code = code;
    this.stack_lines = stack;
  }
}

class DeviceError extends ThingError {
  /** The driver refused with `code` and `message`; a driver throws it from its callbacks to refuse. */
  constructor(code, message) {
    super(message || `refused with code ${code}`, Number(code), 'DeviceError');
  }
}

function errorFrom(err) {
  if (!(err instanceof runtime.RemoteError)) return err;
  const e = err.error;
  const type = String(e.type || 'Error');
  if (type === 'DeviceError') return new DeviceError(Number(e.code ?? codes.UNKNOWN), String(e.message || ''));
  return new ThingError(String(e.message || ''), BY_ERROR_TYPE[type] ?? codes.UNKNOWN, type === 'Handled' ? 'DriverFailed' : type, e.stack || []);
}

/** An SDK call to the gateway; rejects with ThingError (by type) when the gateway refuses it. */
function gatewayCall(op, args) {
  return runtime.call(op, args).catch((err) => { throw errorFrom(err); });
}

function withTimeout(args, options) {
  if (options && options.timeout !== undefined && options.timeout !== null) args.timeout = Number(options.timeout);
  return args;
}

/** Current values of `keys` (all the driver offers for none), as the driver answers them. */
function getProperties(productKey, deviceName, keys = [], options) {
  return gatewayCall('thing.get_properties', withTimeout({ product_key: productKey, device_name: deviceName, keys: [...keys] }, options));
}

/** Have the driver set `properties`; resolves with its answer object. */
function setProperties(productKey, deviceName, properties, options) {
  return gatewayCall('thing.set_properties', withTimeout({ product_key: productKey, device_name: deviceName, properties: { ...properties } }, options));
}

/** Run service `name` of the device with `args`; resolves with the driver's answer object. */
function callService(productKey, deviceName, name, args = {}, options) {
  return gatewayCall('thing.call_service', withTimeout({ product_key: productKey, device_name: deviceName, name, args: { ...args } }, options));
}

/** Devices carrying every tag in `tags`, each as GET /v1/devices shows it. */
function find(tags = {}) {
  return gatewayCall('thing.find', { tags: { ...tags } });
}

module.exports = { DeviceError, ThingError, callService, errorFrom, find, gatewayCall, getProperties, setProperties };
