"""Tests of what sshwrap prints and which names it takes, whatever a profile or server holds."""
