// Run with --unhandled-rejections=warn: on SIGTERM a promise rejects unhandled, Node only
// warns, and the process exits 0 once nothing keeps its loop alive.
console.log('ready');
const keep = setInterval(() => {}, 1000);
process.on('SIGTERM', () => {
  clearInterval(keep);
  Promise.reject(new RangeError('late reply'));
});
