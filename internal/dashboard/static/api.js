// The Platform API as the dashboard uses it: same origin, the user's API
// key from sessionStorage (gone when the tab closes), JSON in and out.

const KEY = "dyno.session"; // {key, authorization, email}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function saveSession(s) {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
}

// APIError carries the API's {id, message} error and the HTTP status.
export class APIError extends Error {
  constructor(status, id, message) {
    super(message || `The API answered ${status}.`);
    this.status = status;
    this.id = id;
  }
}

// request sends one API call. headers may add to or replace the defaults
// (Authorization for a password login, Range for releases).
export async function request(method, path, body, { headers = {}, signal } = {}) {
  const h = { Accept: "application/vnd.heroku+json; version=3" };
  const s = session();
  if (s) h.Authorization = "Bearer " + s.key;
  if (body !== undefined) h["Content-Type"] = "application/json";
  Object.assign(h, headers);
  let resp;
  try {
    resp = await fetch(path, {
      method, headers: h, signal, credentials: "omit", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new APIError(0, "network", "The API server cannot be reached: check that it runs, then try again.");
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 401 && s && !headers.Authorization) {
      saveSession(null); // the key was revoked or expired: log in again
      location.hash = "#/login";
    }
    throw new APIError(resp.status, data && data.id, data && data.message);
  }
  return data;
}

export const get = (path, opts) => request("GET", path, undefined, opts);

// app builds "/apps/NAME/rest" with the name escaped.
export const app = (name, rest = "") => "/apps/" + encodeURIComponent(name) + rest;

// login makes an API key from an email and password (an OAuth
// authorization, as `dyno login` does) and keeps it for this tab.
export async function login(email, password) {
  const basic = "Basic " + btoa(unescape(encodeURIComponent(email + ":" + password)));
  const auth = await request("POST", "/oauth/authorizations", { description: "Dyno dashboard" },
    { headers: { Authorization: basic } });
  saveSession({ key: auth.access_token.token, authorization: auth.id, email: auth.user.email });
  return session();
}

// loginWithKey checks an existing API key and keeps it for this tab.
export async function loginWithKey(key) {
  const account = await request("GET", "/account", undefined, { headers: { Authorization: "Bearer " + key } });
  saveSession({ key, authorization: "", email: account.email });
  return session();
}

// logout revokes the key the dashboard made at login (a pasted key is the
// user's own, and stays) and forgets it.
export async function logout() {
  const s = session();
  if (s && s.authorization) {
    try {
      await request("DELETE", "/oauth/authorizations/" + encodeURIComponent(s.authorization));
    } catch {
      // the key is forgotten below either way
    }
  }
  saveSession(null);
}
