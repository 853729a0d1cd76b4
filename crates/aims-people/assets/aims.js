// AIMS pages: passkey ceremonies (WebAuthn) against the server's JSON endpoints. Every POST
// carries the page's CSRF token in X-CSRF-Token.
"use strict";
(() => {
  const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0)).buffer;
  const enc = (b) => b ? btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : null;
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const show = (m) => { const e = document.getElementById("error"); if (e) e.textContent = m; };

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json", "x-csrf-token": csrf() }, body: JSON.stringify(body) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error_description || j.error || ("HTTP " + r.status));
    return j;
  }

  async function register(enrolment) {
    const { handle, options } = await post("/passkeys/options", { enrolment_token: enrolment });
    const pk = options.publicKey;
    pk.challenge = dec(pk.challenge);
    pk.user.id = dec(pk.user.id);
    (pk.excludeCredentials || []).forEach((c) => { c.id = dec(c.id); });
    const cred = await navigator.credentials.create({ publicKey: pk });
    const credential = {
      id: cred.id, rawId: enc(cred.rawId), type: cred.type,
      response: { attestationObject: enc(cred.response.attestationObject), clientDataJSON: enc(cred.response.clientDataJSON), transports: cred.response.getTransports ? cred.response.getTransports() : undefined },
      extensions: cred.getClientExtensionResults(),
    };
    const done = await post("/passkeys/finish", { handle, credential, enrolment_token: enrolment });
    location.assign(done.redirect);
  }

  async function signIn() {
    const username = document.getElementById("username").value;
    const { handle, options } = await post("/login/passkey/options", { username });
    const pk = options.publicKey;
    pk.challenge = dec(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
    const cred = await navigator.credentials.get({ publicKey: pk });
    const credential = {
      id: cred.id, rawId: enc(cred.rawId), type: cred.type,
      response: { authenticatorData: enc(cred.response.authenticatorData), clientDataJSON: enc(cred.response.clientDataJSON), signature: enc(cred.response.signature), userHandle: enc(cred.response.userHandle) },
      extensions: cred.getClientExtensionResults(),
    };
    const done = await post("/login/passkey/finish", { handle, credential, return_to: document.getElementById("return_to").value });
    location.assign(done.redirect);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-register-passkey]").forEach((b) => b.addEventListener("click", () => register(b.dataset.enrolment || null).catch((e) => show(e.message))));
    document.querySelectorAll("[data-passkey-sign-in]").forEach((b) => b.addEventListener("click", () => signIn().catch((e) => show(e.message))));
  });
})();
