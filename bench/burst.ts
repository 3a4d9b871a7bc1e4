// A burst of mail into alpha with a hard reset in the middle: remote senders (here, several
// SMTP connections from the lab client) send N messages to port 25; when half have been
// accepted, alpha's VM is killed outright, as a power cut would. The senders keep at it and
// retry whatever did not get a 250, as an MTA's queue does. Once alpha is back and its queue
// is empty, every Message-ID is counted over IMAP, then counted again after the fold that runs
// once a boot (mailstack-dedup, started here rather than waited for): each accepted message
// must be there, once.
import { startHost } from "../lab/lab";
import { sleep } from "../lab/run";
import type { LabHost } from "../lab/settings";
import { stopHost } from "../lab/vm";
import { SmtpSession } from "../tests/lab/smtp";
import { onHost, withImap } from "../tests/lab/support";

export interface BurstResult {
  messages: number;
  connections: number;
  accepted: number;
  acceptedBeforeReset: number;
  arrived: number;
  /** Accepted with a 250, yet not in the mailbox: lost. */
  lost: number;
  /** In the mailbox more than once, after the boot's fold (mailstack-dedup). */
  duplicates: number;
  /** In the mailbox more than once when the queue was empty, before the fold. */
  duplicatesBeforeFold: number;
  /** What the fold said it did. */
  fold: string;
  /** Sends that did not get a 250 and were tried again. */
  retried: number;
  resetSeconds: number;
  seconds: number;
}

const CONNECTIONS = 8;
/** A burst that gets no message accepted for this long stops: the host did not come back. */
const STALL_MS = 20 * 60_000;

class RefusedError extends Error {}
const FROM = "someone@lab.example";

function text(to: string, id: string, i: number): string {
  return [
    `From: ${FROM}`,
    `To: ${to}`,
    `Subject: burst ${i}`,
    `Message-ID: <${id}>`,
    `Date: ${new Date().toUTCString()}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    `Message ${i} of the burst. It must arrive once, whatever happens to the server.`,
    "",
  ].join("\r\n");
}

/** Message-IDs in a mailbox, counted. */
function messageIds(h: LabHost, user: string, password: string): Promise<Map<string, number>> {
  return withImap(h, user, password, async (client) => {
    const ids = new Map<string, number>();
    const lock = await client.getMailboxLock("INBOX");
    try {
      if ((client.mailbox as { exists: number }).exists > 0)
        for await (const m of client.fetch("1:*", { envelope: true })) {
          const id = (m.envelope?.messageId ?? "").replace(/^<|>$/g, "");
          ids.set(id, (ids.get(id) ?? 0) + 1);
        }
    } finally {
      lock.release();
    }
    return ids;
  });
}

export async function burst(h: LabHost, n: number, password: string): Promise<BurstResult> {
  const to = `bob@${h.config.domain}`;
  const run = `${Date.now().toString(36)}`;
  const idOf = (i: number) => `burst-${run}-${i}@lab.example`;
  const pending = Array.from({ length: n }, (_, i) => i);
  const accepted = new Set<number>();
  let retried = 0;
  let acceptedBeforeReset = 0;
  let resetSeconds = 0;
  const start = Date.now();
  let lastAccepted = start;

  const reset = async () => {
    acceptedBeforeReset = accepted.size;
    const t = Date.now();
    stopHost(h);
    await sleep(2000);
    await startHost(h);
    resetSeconds = Math.round((Date.now() - t) / 1000);
  };
  let resetting: Promise<void> | undefined;

  const worker = async () => {
    let session: SmtpSession | undefined;
    while (pending.length > 0) {
      const i = pending.shift()!;
      try {
        if (!session) {
          session = await SmtpSession.open({ host: h.ipv4, port: 25 });
          if (session.greeting.code !== 220) throw new Error(session.greeting.text);
          await session.ehlo();
        }
        const mail = await session.command(`MAIL FROM:<${FROM}>`);
        const rcpt = mail.code === 250 ? await session.command(`RCPT TO:<${to}>`) : mail;
        const data = rcpt.code === 250 ? await session.data(text(to, idOf(i), i)) : rcpt;
        // A refusal (5xx) is final: the bench's mail must never be refused.
        if (data.code >= 500) throw new RefusedError(`message ${i} refused: ${data.text}`);
        if (data.code !== 250) throw new Error(data.text);
        accepted.add(i);
        lastAccepted = Date.now();
        if (!resetting && accepted.size >= n / 2) resetting = reset();
      } catch (e) {
        if (e instanceof RefusedError) throw e;
        if (Date.now() - lastAccepted > STALL_MS)
          throw new Error(
            `${h.name} accepted nothing for ${STALL_MS / 60_000} minutes (last: ${(e as Error).message}); ` +
              `${accepted.size} of ${n} accepted`,
          );
        // Not accepted: tried again later, on a new connection, as a sending MTA does.
        retried++;
        pending.push(i);
        session?.close();
        session = undefined;
        await sleep(3000);
      }
    }
    session?.close();
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  await resetting;

  // Everything accepted is in a mailbox once alpha's queue is empty (a message leaves it only
  // after LMTP's 250). A delivery deferred by a temporary failure, such as Dovecot repairing an
  // index the reset tore, is retried at once rather than after the queue's back-off.
  let queued = "";
  while ((queued = onHost(h, "postqueue -f; postqueue -j | wc -l").trim()) !== "0") {
    if (Date.now() - lastAccepted > STALL_MS)
      throw new Error(
        `${h.name}: ${queued} messages still queued after ${STALL_MS / 60_000} minutes`,
      );
    await sleep(10_000);
  }
  const before = await messageIds(h, to, password);
  // What the timer does 15 minutes after boot; by now Postfix has delivered all it had.
  onHost(h, "systemctl start mailstack-dedup.service");
  const fold = onHost(
    h,
    "journalctl -u mailstack-dedup -b -o cat | grep folded | tail -n 1",
  ).trim();
  const ids = await messageIds(h, to, password);
  const twice = (counts: Map<string, number>) =>
    Array.from({ length: n }, (_, i) => counts.get(idOf(i)) ?? 0).filter((c) => c > 1).length;
  let arrived = 0;
  let lost = 0;
  for (let i = 0; i < n; i++) {
    const c = ids.get(idOf(i)) ?? 0;
    if (c > 0) arrived++;
    if (c === 0 && accepted.has(i)) lost++;
  }
  return {
    messages: n,
    connections: CONNECTIONS,
    accepted: accepted.size,
    acceptedBeforeReset,
    arrived,
    lost,
    duplicates: twice(ids),
    duplicatesBeforeFold: twice(before),
    fold,
    retried,
    resetSeconds,
    seconds: Math.round((Date.now() - start) / 1000),
  };
}
