/**
 * The PATH a host script runs with in these tests: `bin`, the test's stubs, if any, first,
 * then the directories systemd gives the host's units on Debian. Not this machine's PATH,
 * whose shims are not on a host (pyenv's python3 is a bash script that runs a dozen programs
 * before Python) and cost a test run seconds.
 */
export const hostPath = (bin?: string) =>
  [bin, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    .filter(Boolean)
    .join(":");
