# Global sieve script, run by LMTP before the user's own script (dovecot.conf,
# sieve_script spam-to-junk). Rspamd adds "X-Spam: Yes" to messages it scores as
# spam; those are filed into Junk. No "stop": the user's script still runs and
# may file the message elsewhere.
require ["fileinto", "mailbox"];

if header :is "X-Spam" "Yes" {
  fileinto :create "Junk";
}
