/*
 * Chat widget for the horoscope assistant. It talks to Rasa's REST channel
 * (POST {rasa}/webhooks/rest/webhook with {sender, message}) and needs no
 * library or build step.
 *
 * Safety: every text from the bot is put on the page with textContent, never
 * as HTML, so a reply cannot inject markup or scripts.
 * Memory: the sender id and the transcript live in localStorage, so a reload
 * shows the same conversation and Rasa keeps its dialogue state for the sender.
 */
(function () {
  "use strict";

  const DEFAULT_RASA_URL = "http://127.0.0.1:5005";
  const WEBHOOK_PATH = "/webhooks/rest/webhook";
  const REQUEST_TIMEOUT_MS = 15000;
  const SENDER_KEY = "horoscope-chat:sender";
  const TRANSCRIPT_KEY = "horoscope-chat:transcript";
  const MAX_STORED_MESSAGES = 200;

  const MESSAGES = {
    misconfigured: "The chat is not set up correctly: the assistant's address is not an http(s) URL.",
    unreachable: "I can't reach the assistant right now. Please check your connection and try again.",
    timeout: "The assistant is taking too long to answer. Please try again.",
    unreadable: "The assistant sent an answer I couldn't read. Please try again.",
    httpError: (status) => `The assistant had a problem answering (error ${status}). Please try again in a moment.`,
  };

  const root = document.getElementById("chat");
  const list = document.getElementById("chat-messages");
  const typing = document.getElementById("chat-typing");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const sendButton = document.getElementById("chat-send");

  /** A failure whose message is already fit to show to the user. */
  class ChatError extends Error {}

  /** The webhook URL from ?rasa=, else data-rasa-url, else the default; null when not http(s). */
  function webhookUrl() {
    const configured =
      new URLSearchParams(window.location.search).get("rasa") || root.dataset.rasaUrl || DEFAULT_RASA_URL;
    try {
      const url = new URL(configured);
      if (url.protocol === "http:" || url.protocol === "https:") {
        return url.href.replace(/\/+$/, "") + WEBHOOK_PATH;
      }
    } catch (invalidUrl) {
      // falls through: reported to the user below
    }
    return null;
  }

  // localStorage can be disabled or full: the chat then works without memory.
  function readStorage(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (unavailable) {
      return null;
    }
  }

  function writeStorage(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (unavailable) {
      // nothing to do: the conversation simply won't survive a reload
    }
  }

  /** A random sender id, created once per browser so Rasa recognises the conversation. */
  function stableSenderId() {
    const stored = readStorage(SENDER_KEY);
    if (stored && /^[0-9a-f]{32}$/.test(stored)) {
      return stored;
    }
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    const id = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    writeStorage(SENDER_KEY, id);
    return id;
  }

  /** Keeps only buttons with a payload; a missing title shows the payload. */
  function toButtons(raw) {
    if (!Array.isArray(raw)) {
      return [];
    }
    return raw
      .filter((button) => button && typeof button.payload === "string" && button.payload.trim())
      .map((button) => ({
        payload: button.payload,
        title: typeof button.title === "string" && button.title.trim() ? button.title : button.payload,
      }));
  }

  /** A transcript entry from a Rasa reply or a stored entry; null for anything unusable. */
  function toEntry(raw, from) {
    if (!raw || typeof raw !== "object") {
      return null;
    }
    const text = typeof raw.text === "string" ? raw.text : "";
    const buttons = from === "bot" ? toButtons(raw.buttons) : [];
    return text || buttons.length ? { from, text, buttons } : null;
  }

  function loadTranscript() {
    let stored;
    try {
      stored = JSON.parse(readStorage(TRANSCRIPT_KEY) || "[]");
    } catch (corrupt) {
      return [];
    }
    if (!Array.isArray(stored)) {
      return [];
    }
    return stored
      .map((raw) => (raw && (raw.from === "user" || raw.from === "bot") ? toEntry(raw, raw.from) : null))
      .filter(Boolean);
  }

  function scrollToEnd() {
    list.scrollTop = list.scrollHeight;
  }

  /** Adds one message to the list; all text goes in through textContent. */
  function renderMessage(entry) {
    const item = document.createElement("li");
    item.className = `chat__message chat__message--${entry.from}`;
    if (entry.text) {
      const bubble = document.createElement("p");
      bubble.className = "chat__bubble";
      bubble.textContent = entry.text;
      item.appendChild(bubble);
    }
    if (entry.buttons && entry.buttons.length) {
      const choices = document.createElement("div");
      choices.className = "chat__choices";
      for (const button of entry.buttons) {
        const choice = document.createElement("button");
        choice.type = "button";
        choice.className = "chat__choice";
        choice.textContent = button.title;
        choice.addEventListener("click", () => send(button.payload, button.title));
        choices.appendChild(choice);
      }
      item.appendChild(choices);
    }
    list.appendChild(item);
    scrollToEnd();
    return item;
  }

  function showSystemMessage(text) {
    const item = renderMessage({ from: "system", text });
    item.setAttribute("role", "alert");
  }

  function setWaiting(waiting) {
    typing.hidden = !waiting;
    sendButton.disabled = waiting;
    input.readOnly = waiting;
    list.setAttribute("aria-busy", String(waiting));
    if (waiting) {
      scrollToEnd();
    }
  }

  /** Posts one message; resolves to the bot's transcript entries or throws a ChatError. */
  async function askRasa(url, sender, message) {
    const controller = new AbortController();
    const timer = window.setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sender, message }),
        signal: controller.signal,
      });
      if (!response.ok) {
        throw new ChatError(MESSAGES.httpError(response.status));
      }
      const replies = await response.json();
      if (!Array.isArray(replies)) {
        throw new ChatError(MESSAGES.unreadable);
      }
      return replies.map((reply) => toEntry(reply, "bot")).filter(Boolean);
    } catch (error) {
      if (error instanceof ChatError) {
        throw error;
      }
      console.warn("chat request failed:", error);
      if (error.name === "AbortError") {
        throw new ChatError(MESSAGES.timeout);
      }
      if (error instanceof SyntaxError) {
        throw new ChatError(MESSAGES.unreadable);
      }
      throw new ChatError(MESSAGES.unreachable);
    } finally {
      window.clearTimeout(timer);
    }
  }

  const url = webhookUrl();
  const sender = stableSenderId();
  const transcript = loadTranscript();
  let waiting = false;

  function remember(entries) {
    transcript.push(...entries);
    transcript.splice(0, Math.max(0, transcript.length - MAX_STORED_MESSAGES));
    writeStorage(TRANSCRIPT_KEY, JSON.stringify(transcript));
  }

  /** Answered buttons are removed, on the page and in the stored transcript. */
  function retireChoices() {
    for (const choices of list.querySelectorAll(".chat__choices")) {
      choices.remove();
    }
    for (const entry of transcript) {
      entry.buttons = [];
    }
  }

  /**
   * Sends `message` (typed, or a button's payload shown as `shownAs`).
   * The typed text leaves the input box only once Rasa has answered, so a
   * failure never loses it.
   */
  async function send(message, shownAs) {
    const text = message.trim();
    if (waiting || !text) {
      return;
    }
    if (!url) {
      showSystemMessage(MESSAGES.misconfigured);
      return;
    }
    const typed = shownAs === undefined;
    const userEntry = { from: "user", text: typed ? text : shownAs, buttons: [] };
    const userItem = renderMessage(userEntry);
    waiting = true;
    setWaiting(true);
    try {
      const replies = await askRasa(url, sender, text);
      retireChoices();
      remember([userEntry, ...replies]);
      replies.forEach(renderMessage);
      if (typed) {
        input.value = "";
      }
    } catch (error) {
      userItem.classList.add("chat__message--failed");
      showSystemMessage(error.message);
    } finally {
      waiting = false;
      setWaiting(false);
      input.focus();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(input.value);
  });

  transcript.forEach(renderMessage);
  if (!url) {
    showSystemMessage(MESSAGES.misconfigured);
  }
})();
