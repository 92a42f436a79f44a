// A child process that keeps the parent's loop alive (its ProcessWrap handle is ref'ed).
const { spawn } = require('child_process');
process.on('SIGTERM', () => console.log('stopping (but the child still runs)'));
const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
console.log('ready ' + child.pid);
