// Calls to the mcdrop API with the key typed into the page (kept in sessionStorage only).

const KEY_ITEM = "mcdrop.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

/** GET (no body) or POST (a JSON body) `path`; the parsed JSON, or the text when `text`. */
export async function call(path, { body, text = false } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const content = await response.text();
  if (!response.ok) throw new ApiError(response.status, errorMessage(response, content));
  return text ? content : JSON.parse(content);
}

function errorMessage(response, content) {
  let message = content;
  try {
    message = JSON.parse(content).error ?? content;
  } catch {
    // not JSON: the text itself
  }
  if (response.status === 401) return "This server needs an API key: type it above.";
  return `${response.status}: ${message || response.statusText}`;
}

/** Wire the key form of a page: fill it from the session, store what is submitted. */
export function bindKeyForm(form, input, onChange) {
  input.value = apiKey();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    onChange();
  });
}
