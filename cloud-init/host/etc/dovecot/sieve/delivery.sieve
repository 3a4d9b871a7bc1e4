# Global Sieve script (dovecot.conf: sieve_script delivery, type before), run at delivery
# before the user's own script. Filing or discarding cancels the implicit keep, and Pigeonhole
# then does not run the user's script for that message.
# Pre-compile after every change (LMTP runs as vmail and cannot write here):
#   sievec /etc/dovecot/sieve/delivery.sieve
require ["fileinto", "mailbox", "duplicate"];

# A message this mailbox already received (the same Message-ID, RFC 7352) is delivered once.
# SMTP and LMTP deliver at least once: a sender that lost our 250, or a Postfix that lost
# Dovecot's after a crash or a power cut, sends the message again. The same test folds a
# mailing list's copy and a direct copy of one message, as the large providers do.
if duplicate {
  discard;
  stop;
}

# Rspamd marks spam with "X-Spam: Yes"; such messages are filed into Junk.
if header :is "X-Spam" "Yes" {
  fileinto :create "Junk";
}
