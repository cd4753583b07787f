// Tiny DOM helpers. Strings always become text nodes: nothing here parses HTML.

/**
 * el("a", {href: "...", class: "x", dataset: {k: "v"}}, "text", childNode, ...)
 * Attribute values are set with setAttribute (never as markup); children that are not nodes
 * become text nodes. `on` attributes are refused: listeners are added with addEventListener.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (/^on/i.test(key)) throw new Error(`refusing inline handler attribute ${key}`);
    if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    } else if (key === "class") {
      node.className = String(value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, ...children);
  return node;
}

export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, ...children);
}

/** A tag badge (Stellar Expert directory label); the class is derived from a safe slug. */
export function tagBadge(tag) {
  const text = String(tag);
  const slug = text.toLowerCase().replace(/[^a-z0-9-]/g, "").slice(0, 32) || "other";
  return el("span", { class: `badge tag tag-${slug}` }, text);
}

/** Announce a message in the page's polite live region (screen readers). */
export function announce(message) {
  const region = document.getElementById("live-region");
  if (region) region.textContent = String(message);
}
