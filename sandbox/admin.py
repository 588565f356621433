# The emulators have their own pages under /sandbox/; they stay out of zkbridge's admin on purpose.
