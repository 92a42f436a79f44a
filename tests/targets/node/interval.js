// An interval nobody clears: SIGTERM is handled (a "graceful" stop that forgets it).
process.on('SIGTERM', () => console.log('stopping (but the poll interval is still set)'));
function poll() {}
setInterval(poll, 1000);
console.log('ready');
