// The network switch (radio group) shared by every page, and the network badge.
import { el } from "./dom.js";

export function networkLabel(name) {
  if (name === "public") return "Public";
  if (name === "testnet") return "Testnet";
  return String(name);
}

/**
 * Fill `container` with one radio per network. `onChange(name)` runs when the visitor picks one.
 * Returns {set(name)} to move the selection from code.
 */
export function networkSwitch(container, networks, current, onChange) {
  container.replaceChildren();
  const inputs = [];
  for (const name of networks) {
    const id = `network-${String(name).replace(/[^a-z0-9-]/gi, "")}`;
    const input = el("input", { type: "radio", name: "network", id, value: name });
    input.checked = name === current;
    input.addEventListener("change", () => {
      if (input.checked) onChange(name);
    });
    inputs.push(input);
    container.append(el("label", { for: id }, input, el("span", {}, networkLabel(name))));
  }
  return {
    set(name) {
      for (const input of inputs) input.checked = input.value === name;
    },
    get() {
      const checked = inputs.find((i) => i.checked);
      return checked ? checked.value : current;
    },
  };
}

export function setNetworkBadge(badge, network) {
  if (!badge) return;
  badge.textContent = network;
  badge.classList.toggle("testnet", network === "testnet");
  badge.setAttribute("aria-label", `Network: ${network}`);
}
