'use strict';
// An application for Link IoT Edge's core SDK: on an invoke it sets every hall lamp to the brightness asked
// for and reads it back; lamp reports routed to it are logged. Runs unchanged on edgefc.

const leSdk = require('linkedge-core-sdk');

const iotData = new leSdk.IoTData();

// Promise wrappers over the SDK's Node-style callbacks.
const promised = (method) => (params) => new Promise((resolve, reject) => {
  iotData[method](params, (err, data) => (err ? reject(err) : resolve(data)));
});
const getThingsWithTags = promised('getThingsWithTags');
const setThingProperties = promised('setThingProperties');
const getThingProperties = promised('getThingProperties');

exports.handler = function (event, context, callback) {
  const request = JSON.parse(event.toString() || '{}');
  if (request.topic) {
    console.log(`lamp report on ${request.topic}: ${request.payload}`);
    callback(null);
    return;
  }
  getThingsWithTags({ payload: [{ room: 'hall' }] })
    .then((things) => Promise.all(things.map((thing) => setThingProperties({ ...thing, payload: { brightness: request.brightness } })
      .then(() => getThingProperties({ ...thing, payload: ['brightness'] }))
      .then((properties) => ({ ...thing, ...properties })))))
    .then((lamps) => callback(null, { lamps }))
    .catch((err) => callback(err));
};
