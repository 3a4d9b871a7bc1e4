# Global Sieve script (dovecot.conf: sieve_script spam-to-junk, type before), run at
# delivery before the user's own script. Rspamd marks spam with "X-Spam: Yes"; such
# messages are filed into Junk. Filing cancels the implicit keep, and Pigeonhole then
# does not run the user's script for that message: spam stays in Junk.
# Pre-compile after every change (LMTP runs as vmail and cannot write here):
#   sievec /etc/dovecot/sieve/spam-to-junk.sieve
require ["fileinto", "mailbox"];

if header :is "X-Spam" "Yes" {
  fileinto :create "Junk";
}
