'use strict';
// `linkedge-thing-access-sdk` (Link IoT Edge's device access SDK for Node.js) on edgefc's `fc.driver`.
// Same exports, constructor checks, Promise-returning methods and error `code` strings as the real package
// (aliyun/linkedge-thing-access-sdk-nodejs); see docs/nodejs.md for what differs.

const fc = require('edgefc');
const codes = require('edgefc/codes');

const { DeviceError, ThingClient } = fc.driver;

const RESULT_SUCCESS = 0;
const RESULT_FAILURE = -3;

// The real package rejects with an Error whose `code` names the step that failed.
const ERROR_SETUP = 'setup';
const ERROR_CLEANUP = 'cleanup';
const ERROR_CONNECT = 'connect';
const ERROR_DISCONNECT = 'disconnect';
const ERROR_GET_TSL = 'get_tsl';
const ERROR_GET_TSL_CONFIG = 'get_tsl_config';
const ERROR_GET_CONFIG = 'get_config';
const ERROR_UNREGISTER = 'unregister';

/** Re-throw `err` as the real SDK does: an Error with `code` = the step; edgefc's numeric code as `errno`. */
function stepError(step) {
  return (err) => {
    const error = err instanceof Error ? err : new Error(String(err));
    if (typeof error.code === 'number') error.errno = error.code;
    error.code = step;
    throw error;
  };
}

class ThingInfo {
  /** A device assigned to this driver: productKey, deviceName and its custom config (parsed when JSON text). */
  constructor({ productKey, deviceName, custom } = {}) {
    this.productKey = productKey;
    this.deviceName = deviceName;
    this.custom = undefined;
    if (typeof custom === 'string') {
      try {
        this.custom = JSON.parse(custom);
      } catch (_) {
        console.warn(`Not JSON string: ${custom}`);
      }
    } else if (custom !== null && custom !== undefined) {
      this.custom = custom;
    }
  }

  static from(config) {
    if (!config.productKey) throw new Error(`Can't find required "productKey".`);
    if (!config.deviceName) throw new Error(`Can't find required "deviceName".`);
    return new ThingInfo(config);
  }
}

const changeCallbacks = new Set();

class Config {
  /** The driver's configuration: `new Config(jsonText)` with a non-empty `deviceList`. Throws on bad text. */
  constructor(string) {
    let config;
    try {
      config = JSON.parse(string);
    } catch (err) {
      throw new Error('Config is not JSON string!');
    }
    const devices = config.deviceList;
    if (!Array.isArray(devices) || devices.length === 0) {
      throw new Error('Could not find device information in config!');
    }
    this.thingInfos = devices.map((device) => ThingInfo.from(device));
    this.driverConfig = config.config;
  }

  /** Resolves with the Config of this driver, read from the gateway. */
  static get() {
    return fc.driver.devices().then((found) => new Config(JSON.stringify({
      config: fc.config(),
      deviceList: found.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName, custom: d.config })),
    })), stepError(ERROR_GET_CONFIG));
  }

  /**
   * Kept for compatibility: on edgefc a changed configuration is a new deployment, which restarts the driver
   * with it, so these callbacks are never called.
   */
  static registerChangedCallback(callback) { changeCallbacks.add(callback); }

  static unregisterChangedCallback(callback) { changeCallbacks.delete(callback); }

  getThingInfos() { return this.thingInfos; }

  getDriverInfo() { return this.driverConfig; }
}

/** Resolves with this driver's Config. */
function getConfig() {
  return Config.get();
}

/** A callback's `{code, message, params}` (or a promise of one) as the driver SDK's answer. */
function unpack(result, what, onSuccess) {
  return Promise.resolve(result).then((ret) => {
    if (ret === null || typeof ret !== 'object') {
      throw new TypeError(`${what} must return {code, message, params}, got ${JSON.stringify(ret)}`);
    }
    if (ret.code) throw new DeviceError(Number(ret.code), ret.message || `${what} returned code ${ret.code}`);
    return onSuccess(ret);
  });
}

class ThingAccessClient {
  /** `config`: {productKey, deviceName}; `callbacks`: {getProperties, setProperties, callService}. Throws when either is missing. */
  constructor(config, callbacks) {
    if (!callbacks || !callbacks.getProperties || !callbacks.setProperties || !callbacks.callService) {
      throw new Error('Illegal callbacks');
    }
    if (!config || !config.productKey || (!config.deviceName && !config.localName)) {
      throw new Error('Illegal config');
    }
    this.config = config;
    this.callbacks = callbacks;
    this._client = new ThingClient(config.productKey, config.deviceName || config.localName, {
      onGet: (keys) => unpack(callbacks.getProperties(keys), 'getProperties', (ret) => {
        if (!ret.params) throw new Error('"params" is required when "get" callback returns successful.');
        return ret.params;
      }),
      onSet: (props) => unpack(callbacks.setProperties(props), 'setProperties', () => ({})),
      onService: (name, args) => unpack(callbacks.callService(name, args), 'callService', (ret) => ret.params || {}),
    });
    this._online = false;
  }

  /** @deprecated as in the real SDK: every method sets up by itself. */
  setup() { return Promise.resolve(); }

  /** Register the thing with the gateway and put it online. Rejects with code 'connect'. */
  registerAndOnline() {
    return this._client.registerAndOnline().then(() => { this._online = true; }, stepError(ERROR_CONNECT));
  }

  online() {
    const step = this._online ? this._client.online() : this._client.registerAndOnline();
    return step.then(() => { this._online = true; }, stepError(ERROR_CONNECT));
  }

  offline() {
    return this._client.offline().then(() => { this._online = false; }, stepError(ERROR_DISCONNECT));
  }

  /** Report an event, routed on /sys/{pk}/{dn}/thing/event/{eventName}/post. */
  reportEvent(eventName, args) {
    return this._client.reportEvent(eventName, args || {});
  }

  /** Report new property values, routed on /sys/{pk}/{dn}/thing/event/property/post. */
  reportProperties(properties) {
    return this._client.reportProperties(properties);
  }

  getTsl() { return this._client.thingModel('tsl').catch(stepError(ERROR_GET_TSL)); }

  getTslConfig() { return this._client.thingModel('tsl_ext_info').catch(stepError(ERROR_GET_TSL_CONFIG)); }

  getTslExtInfo() { return this.getTslConfig(); }

  /** Release the thing: it goes offline and is unregistered; a gateway that is already gone is no error. */
  cleanup() {
    if (!this._online) return Promise.resolve();
    this._online = false;
    return this._client.unregister().catch(() => undefined);
  }

  unregister() {
    this._online = false;
    return this._client.unregister().catch(stepError(ERROR_UNREGISTER));
  }
}

module.exports = {
  RESULT_SUCCESS,
  RESULT_FAILURE,
  ERROR_PROPERTY_NOT_EXIST: codes.PROPERTY_NOT_EXIST,
  ERROR_PROPERTY_READ_ONLY: codes.PROPERTY_READ_ONLY,
  ERROR_PROPERTY_WRITE_ONLY: codes.PROPERTY_WRITE_ONLY,
  ERROR_SERVICE_NOT_EXIST: codes.SERVICE_NOT_EXIST,
  ERROR_SERVICE_INVALID_PARAM: codes.SERVICE_INPUT_PARAM,
  ERROR_INVALID_JSON: codes.INVALID_JSON,
  ERROR_INVALID_TYPE: codes.INVALID_TYPE,
  ERROR_UNKNOWN: codes.UNKNOWN,
  ERROR_TIMEOUT: codes.TIMEOUT,
  ERROR_PARAM_RANGE_OVERFLOW: 100007,
  ERROR_SERVICE_UNREACHABLE: codes.SERVICE_UNREACHABLE,
  ERROR_FILE_NOT_EXIST: 100009,
  SET_PROPERTIES: 'setProperties',
  GET_PROPERTIES: 'getProperties',
  CALL_SERVICE: 'callService',
  ERROR_SETUP,
  ERROR_CLEANUP,
  ERROR_CONNECT,
  ERROR_DISCONNECT,
  ERROR_GET_TSL,
  ERROR_GET_TSL_CONFIG,
  ERROR_GET_CONFIG,
  ERROR_UNREGISTER,
  PRODUCT_KEY: 'productKey',
  DEVICE_NAME: 'deviceName',
  LOCAL_NAME: 'localName',
  getConfig,
  Config,
  ThingInfo,
  ThingAccessClient,
};
