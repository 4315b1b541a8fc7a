'use strict';
// `linkedge-core-sdk` (Link IoT Edge's function SDK for Node.js) on edgefc's SDK: IoTData and FCClient with
// Node-style callbacks `(err, data)`, the real package's parameter checks and messages
// (aliyun/linkedge-core-sdk-nodejs); see docs/nodejs.md for what differs.

const fc = require('edgefc');

function getRequiredParameter(params, property) {
  if (!params || !Object.prototype.hasOwnProperty.call(params, property)) return undefined;
  const value = params[property];
  return value === undefined || value === null || value === '' ? undefined : value;
}

function missing(name) {
  return new Error(`Can't find required parameter "${name}".`);
}

/** The function a Link IoT Edge function id names: its last path or ARN segment. */
function functionName(functionId) {
  return String(functionId).replace(/\/+$/, '').split('/').pop().split(':').pop();
}

const STATUS = { NotFound: 404, Busy: 429, Unavailable: 503, ValidationError: 400, BadRequest: 400 };
const FUNCTION_FAILURES = new Set(['Handled', 'Unhandled', 'Timeout', 'OutOfMemory']);

class FCClient {
  /**
   * invokeFunction({functionId, invocationType: 'Sync'|'Async', payload}, callback): Async calls back
   * (null, invocationId); Sync calls back (null, {functionError, statusCode, payload}) — a failed function
   * is data (functionError set), not an err, as on Link IoT Edge.
   */
  invokeFunction(params, callback) {
    if (params.serviceName || params.functionName) {
      throw new Error('Invoking function via serviceName and functionName is not supported by now.');
    }
    const functionId = getRequiredParameter(params, 'functionId');
    if (functionId === undefined) {
      callback(missing('functionId'));
      return;
    }
    const invocationType = params.invocationType === undefined || params.invocationType === null ? 'Sync' : params.invocationType;
    if (invocationType !== 'Sync' && invocationType !== 'Async') {
      callback(new Error(`Incorrect invocationType ${invocationType}. It should be "Sync" or "Async".`));
      return;
    }
    const type = invocationType === 'Sync' ? 'sync' : 'async';
    fc.invoke(functionName(functionId), params.payload, { type }).then((result) => {
      if (type === 'async') callback(null, String(result));
      else callback(null, { functionError: null, statusCode: 200, payload: result });
    }, (err) => {
      if (!(err instanceof fc.FunctionError)) {
        callback(err);
        return;
      }
      const status = FUNCTION_FAILURES.has(err.type) ? 200 : (STATUS[err.type] || 500);
      const body = { errorMessage: err.remoteMessage, errorType: err.type, stackTrace: err.stack_lines };
      callback(null, { functionError: err.type, statusCode: status, payload: Buffer.from(JSON.stringify(body)) });
    });
  }
}

/** A ThingError as the Error the real SDK calls back with: its message, plus edgefc's numeric `code`. */
function thingFailure(err) {
  const error = new Error(err.message);
  error.code = err.code;
  error.type = err.type;
  return error;
}

class IoTData {
  constructor() {
    this.fc = new FCClient();
  }

  /** publish({topic, payload[, qos]}, callback): into the gateway's router as source function:<this function>. */
  publish(params, callback) {
    const topic = getRequiredParameter(params, 'topic');
    if (topic === undefined) {
      callback(missing('topic'));
      return;
    }
    const payload = getRequiredParameter(params, 'payload');
    if (payload === undefined) {
      callback(missing('payload'));
      return;
    }
    fc.publish(topic, payload, { qos: Number(params.qos || 0), confirm: true }).then(() => callback(null), (err) => callback(err));
  }

  /** getThingProperties({productKey, deviceName, payload: [names]}, callback) → (null, {name: value}). */
  getThingProperties(params, callback) {
    if (getRequiredParameter(params, 'payload') === undefined) {
      callback(missing('payload'));
      return;
    }
    this.callThingService({ productKey: params.productKey, deviceName: params.deviceName, service: 'get', payload: params.payload }, callback);
  }

  /** setThingProperties({productKey, deviceName, payload: {name: value}}, callback) → (null, answer). */
  setThingProperties(params, callback) {
    if (getRequiredParameter(params, 'payload') === undefined) {
      callback(missing('payload'));
      return;
    }
    this.callThingService({ productKey: params.productKey, deviceName: params.deviceName, service: 'set', payload: params.payload }, callback);
  }

  /** callThingService({productKey, deviceName, service, payload}, callback) → (null, the driver's answer). */
  callThingService(params, callback) {
    for (const name of ['productKey', 'deviceName', 'service']) {
      if (getRequiredParameter(params, name) === undefined) {
        callback(missing(name));
        return;
      }
    }
    const { productKey, deviceName, service } = params;
    const payload = params.payload;
    let call;
    if (service === 'get') {
      const keys = Array.isArray(payload) ? payload : payload === undefined || payload === null ? [] : [payload];
      call = fc.things.getProperties(productKey, deviceName, keys.map(String), params);
    } else if (service === 'set') {
      call = fc.things.setProperties(productKey, deviceName, payload || {}, params);
    } else {
      call = fc.things.callService(productKey, deviceName, service, payload || {}, params);
    }
    call.then((data) => callback(null, data), (err) => callback(thingFailure(err)));
  }

  /** getThingsWithTags({payload: [{key: value}] or [{key, value}]}, callback) → (null, [{productKey, deviceName}]). */
  getThingsWithTags(params, callback) {
    let tags = getRequiredParameter(params, 'payload');
    if (tags === undefined) {
      callback(missing('payload'));
      return;
    }
    if (!Array.isArray(tags)) tags = [tags];
    const wanted = {};
    for (const tag of tags) {
      if (tag && Object.prototype.hasOwnProperty.call(tag, 'key') && Object.prototype.hasOwnProperty.call(tag, 'value')) {
        wanted[String(tag.key)] = String(tag.value);
      } else {
        for (const [k, v] of Object.entries(tag || {})) wanted[k] = String(v);
      }
    }
    fc.things.find(wanted).then(
      (found) => callback(null, found.map((d) => ({ productKey: d.product_key, deviceName: d.device_name }))),
      (err) => callback(thingFailure(err)),
    );
  }
}

module.exports = { FCClient, IoTData };
