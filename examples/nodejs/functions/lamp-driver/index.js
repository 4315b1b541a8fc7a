'use strict';
// A dimmable lamp driver for Link IoT Edge's thing access SDK: it registers every lamp assigned to it, reports
// each lamp's brightness, and answers get/set/service requests. Runs unchanged on edgefc.

const {
  RESULT_SUCCESS,
  ERROR_PROPERTY_NOT_EXIST,
  ERROR_PROPERTY_READ_ONLY,
  ERROR_SERVICE_NOT_EXIST,
  ThingAccessClient,
  getConfig,
} = require('linkedge-thing-access-sdk');

function lampCallbacks(lamp) {
  return {
    getProperties(keys) {
      const unknown = keys.filter((key) => !(key in lamp));
      if (unknown.length) return { code: ERROR_PROPERTY_NOT_EXIST, message: `no property ${unknown.join(', ')}` };
      const params = {};
      for (const key of keys) params[key] = lamp[key];
      return { code: RESULT_SUCCESS, message: 'success', params };
    },
    setProperties(properties) {
      if (!('brightness' in properties) || Object.keys(properties).length !== 1) {
        return { code: ERROR_PROPERTY_READ_ONLY, message: 'only brightness can be set' };
      }
      lamp.brightness = Math.max(0, Math.min(100, Number(properties.brightness)));
      return { code: RESULT_SUCCESS, message: 'success' };
    },
    callService(name, args) {
      if (name !== 'blink') return { code: ERROR_SERVICE_NOT_EXIST, message: `no service ${name}` };
      // A callback may answer with a promise, as the real SDK allows.
      return new Promise((resolve) => setTimeout(() => {
        lamp.blinks += Number(args.times || 1);
        resolve({ code: RESULT_SUCCESS, message: 'success', params: { blinks: lamp.blinks } });
      }, 10));
    },
  };
}

getConfig()
  .then((config) => Promise.all(config.getThingInfos().map((info) => {
    const lamp = { brightness: (info.custom && info.custom.brightness) || 0, blinks: 0 };
    const client = new ThingAccessClient(info, lampCallbacks(lamp));
    return client.registerAndOnline().then(() => {
      client.reportProperties({ brightness: lamp.brightness });
      setInterval(() => client.reportProperties({ brightness: lamp.brightness }), 5000);
    });
  })))
  .catch((err) => console.error('lamp driver failed to start:', err));

// Link IoT Edge drivers keep a handler that nothing calls.
exports.handler = (event, context, callback) => callback(null);
