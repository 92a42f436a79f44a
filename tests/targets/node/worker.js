// A worker thread that never ends (its own interval), keeping the process alive.
const { Worker } = require('worker_threads');
process.on('SIGTERM', () => console.log('stopping (but the worker still runs)'));
const w = new Worker('setInterval(() => {}, 1000);', { eval: true, name: 'ticker' });
w.on('online', () => console.log('ready'));
