// The event loop blocked in a busy `while`: no JS runs, not even the SIGTERM handler.
process.on('SIGTERM', () => { console.log('stopping'); process.exit(0); });
function spin() {
  for (;;) {
    Date.now();
  }
}
console.log('ready');
setTimeout(spin, 50);
