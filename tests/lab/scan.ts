// Looks for byte strings in a file too big to hold in memory: the raw image of a mail volume,
// or the files of a backup repository. Pure Node, no VM: the unit tests check it too.
import { createReadStream } from "node:fs";

/** How much is read at a time: large enough that the scan runs at disk speed. */
const CHUNK_BYTES = 8 * 1024 * 1024;

/**
 * Which of `tokens` occur anywhere in the file, in one pass from front to back. Each chunk is
 * searched together with the end of the one before (a token's length less one byte), so a
 * token that straddles two chunks is found too. Stops early once every token is found.
 */
export async function fileContains(
  path: string,
  tokens: string[],
  chunkBytes = CHUNK_BYTES,
): Promise<Set<string>> {
  const needles = tokens.map((t) => {
    if (t.length === 0) throw new Error("fileContains: an empty token is found everywhere");
    return Buffer.from(t, "utf8");
  });
  const overlap = Math.max(...needles.map((n) => n.length)) - 1;
  const found = new Set<string>();
  let tail = Buffer.alloc(0);
  for await (const chunk of createReadStream(path, { highWaterMark: chunkBytes })) {
    const window = tail.length > 0 ? Buffer.concat([tail, chunk as Buffer]) : (chunk as Buffer);
    needles.forEach((n, i) => {
      if (window.includes(n)) found.add(tokens[i]);
    });
    // Leaving the loop closes the stream.
    if (found.size === new Set(tokens).size) break;
    tail = Buffer.from(window.subarray(Math.max(0, window.length - overlap)));
  }
  return found;
}

/** Whether `token` occurs anywhere in the file (a raw disk image, a repository's pack file). */
export async function imageContains(path: string, token: string): Promise<boolean> {
  return (await fileContains(path, [token])).has(token);
}
