"""The exit codes of every `ueba` command (shown by `ueba --help` and in the README)."""

EXIT_OK = 0
EXIT_FAILED = 1  # the service refused the request, or delivery failed; the reason is on stderr
EXIT_USAGE = 2  # nothing was done: a bad option or argument, or no service at the address
EXIT_UNREACHABLE = EXIT_USAGE
EXIT_PARTIAL = 3  # `ueba ship`: events ingest rejected are not stored yet; the rest is
EXIT_INTERRUPTED = 130  # Ctrl-C

HELP = """exit codes:
  0    done (ship: every parsed event stored; unparseable lines are only reported)
  1    the service refused the request, or delivery failed; the reason is on stderr
  2    nothing was done: a usage error, or no service answered at the address
  3    ship: ingest rejected some events (the rest is stored); fix the cause, then --resend-rejected
  130  interrupted (ship resumes where the acknowledged data ends)"""
