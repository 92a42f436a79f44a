// On SIGTERM an async cleanup rejects and nobody handles it: Node 15+ crashes (its default).
console.log('ready');
const keep = setInterval(() => {}, 1000);
process.on('SIGTERM', () => {
  clearInterval(keep);
  (async () => { throw new Error('flush failed: db gone'); })();
});
