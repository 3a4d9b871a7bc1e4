-- Managed by mailstack. Dovecot's passdb (dovecot.conf, passdb lua): checks the password of
-- an IMAP, SMTP (submission, through Postfix's SASL) or ManageSieve login.
--
-- /etc/dovecot/passwords holds one line per password, "address device protocols hash": the
-- main password is device "-" (absent for a user with appPasswordsOnly), every other line is
-- one device's app password, opening only the protocols it lists (imap, smtp, sieve).
--
-- /var/lib/mailstack/throttled-logins holds "address,client-address" lines, written by the
-- Fail2Ban jail mailstack-account after repeated wrong passwords for one account from one
-- address: that account is refused from that address for a while, without its password being
-- checked, while the address's other users and the account's other addresses go on working.

local PASSWORDS = "/etc/dovecot/passwords"
local THROTTLED = "/var/lib/mailstack/throttled-logins"

local auth = dovecot.auth

local function is_throttled(user, ip)
  local f = io.open(THROTTLED, "r")
  if f == nil then
    return false
  end
  local key = user .. "," .. ip
  for line in f:lines() do
    if line == key then
      f:close()
      return true
    end
  end
  f:close()
  return false
end

local function opens(protocols, protocol)
  for p in string.gmatch(protocols, "[^,]+") do
    if p == protocol then
      return true
    end
  end
  return false
end

-- Only PLAIN and LOGIN are offered, which come with the password (auth_password_verify).
function auth_passdb_lookup(req)
  return auth.PASSDB_RESULT_INTERNAL_FAILURE, "mailstack passdb: no lookup without a password"
end

function auth_password_verify(req, password)
  local user = req.user
  local ip = req.remote_ip or req.rip or ""
  local protocol = req.protocol or req.service or ""
  if is_throttled(user, ip) then
    req:log_info("throttled: too many wrong passwords for this account from " .. ip)
    return auth.PASSDB_RESULT_USER_DISABLED, "throttled"
  end
  local f, err = io.open(PASSWORDS, "r")
  if f == nil then
    return auth.PASSDB_RESULT_INTERNAL_FAILURE, "cannot read " .. PASSWORDS .. ": " .. tostring(err)
  end
  local known = false
  for line in f:lines() do
    local address, device, protocols, hash = line:match("^([^#%s]%S*) (%S+) (%S+) (%S+)$")
    if address == user then
      known = true
      if opens(protocols, protocol) and req:password_verify(hash, password) == 1 then
        f:close()
        if device ~= "-" then
          req:log_info("app password " .. device)
        end
        return auth.PASSDB_RESULT_OK, {}
      end
    end
  end
  f:close()
  if not known then
    -- Dovecot logs a wrong password itself, but not this: Fail2Ban counts both.
    req:log_info("unknown user")
    return auth.PASSDB_RESULT_USER_UNKNOWN, ""
  end
  return auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
end
