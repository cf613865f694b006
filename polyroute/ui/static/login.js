// Sign-in: POST the key as JSON; the answer sets the HttpOnly session cookie.
const form = document.getElementById("login");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  const key = document.getElementById("key").value.trim();
  const button = document.getElementById("login-submit");
  button.disabled = true;
  try {
    const r = await fetch("/ui/api/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key }),
    });
    if (r.ok) {
      location.replace("/ui/");
      return;
    }
    let message = `sign-in failed (${r.status})`;
    try {
      message = (await r.json()).error.message;
    } catch (_) { /* not JSON: keep the status */ }
    error.textContent = message;
    error.hidden = false;
  } catch (e) {
    error.textContent = `the gateway did not answer (${e})`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
