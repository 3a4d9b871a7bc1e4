// The second factor of people's SSH logins (mailstack:adminMfa totp): the secret pam_oath
// checks codes against, handed to people as the otpauth:// URI authenticator apps import.
import { Secret, TOTP } from "otpauth";

/** RFC 6238 as every authenticator app does it: HMAC-SHA1, 6 digits, 30-second steps. */
export function adminTotp(mailHost: string, secretHex: string): TOTP {
  return new TOTP({
    issuer: "mailstack",
    label: `admin@${mailHost}`,
    secret: Secret.fromHex(secretHex),
    algorithm: "SHA1",
    digits: 6,
    period: 30,
  });
}

/** `otpauth://totp/mailstack:admin%40<mail host>?...`: the stack output `adminTotpUri`. */
export function adminTotpUri(mailHost: string, secretHex: string): string {
  return adminTotp(mailHost, secretHex).toString();
}
