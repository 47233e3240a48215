// pm2 process file: `pm2 start ecosystem.config.js`. One instance in fork mode: IMAP and SQLite
// want a single consumer.
const { config } = require('./package.json');

module.exports = {
  apps: [
    {
      name: 'keymailer',
      script: 'dist/src/cli.js',
      args: 'run',
      // The heap settings every way of starting keymailer uses (package.json config.nodeFlags):
      // young generation and old-space growth kept small, so the daemon stays near its working set.
      node_args: config.nodeFlags.split(' '),
      cwd: __dirname,
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      // A stop must not cut an SMTP send in half: give the graceful stop time to finish.
      kill_timeout: 15000,
      // The daemon says ready (process.send('ready')) once IMAP is in IDLE and HTTP listens.
      wait_ready: true,
      listen_timeout: 20000,
      exp_backoff_restart_delay: 1000,
      max_memory_restart: '300M',
      out_file: 'data/logs/pm2-out.log',
      error_file: 'data/logs/pm2-error.log',
      time: true,
      env: { NODE_ENV: 'production' },
      // `pm2 start ecosystem.config.js` passes its own environment (KEYMAILER_CONFIG, passwords).
    },
  ],
};
