// A listening server that the SIGTERM handler forgets to close.
const net = require('net');
process.on('SIGTERM', () => console.log('stopping (but the server still listens)'));
const server = net.createServer((s) => s.end());
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));
