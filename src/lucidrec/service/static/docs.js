// The API reference, rendered from /openapi.json with DOM text nodes only (no innerHTML, no CDN).
"use strict";

function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined && text !== null) n.textContent = String(text);
  return n;
}

function schemaText(spec, schema) {
  // The schema as JSON, with $refs to named schemas left as names (they are listed below).
  return JSON.stringify(schema || {}, null, 1);
}

function renderEndpoints(spec, root) {
  root.appendChild(el("h2", null, "Endpoints"));
  for (const [path, ops] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(ops)) {
      const box = el("div", "endpoint");
      const head = el("div");
      head.appendChild(el("span", "method", method.toUpperCase()));
      head.appendChild(el("span", "path", path));
      box.appendChild(head);
      if (op.summary) box.appendChild(el("p", null, op.summary));
      if (op.description) box.appendChild(el("p", "desc", op.description));
      const params = (op.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})` +
        (p.description ? `: ${p.description}` : ""));
      if (params.length) {
        box.appendChild(el("h4", null, "Parameters"));
        const ul = el("ul");
        params.forEach((t) => ul.appendChild(el("li", null, t)));
        box.appendChild(ul);
      }
      const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
      if (body) {
        box.appendChild(el("h4", null, "Request body"));
        box.appendChild(el("pre", null, schemaText(spec, body.schema)));
      }
      const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code}: ${r.description || ""}`);
      if (codes.length) {
        box.appendChild(el("h4", null, "Responses"));
        const ul = el("ul");
        codes.forEach((t) => ul.appendChild(el("li", null, t)));
        box.appendChild(ul);
      }
      root.appendChild(box);
    }
  }
}

function renderSchemas(spec, root) {
  const schemas = (spec.components && spec.components.schemas) || {};
  root.appendChild(el("h2", null, "Schemas"));
  for (const [name, schema] of Object.entries(schemas)) {
    const box = el("details", "endpoint");
    box.appendChild(el("summary", null, name));
    box.appendChild(el("pre", null, schemaText(spec, schema)));
    root.appendChild(box);
  }
}

async function main() {
  const res = await fetch("/openapi.json");
  const spec = await res.json();
  const intro = document.getElementById("intro");
  intro.appendChild(el("h2", null, `${spec.info.title} ${spec.info.version}`));
  intro.appendChild(el("p", "desc", spec.info.description || ""));
  renderEndpoints(spec, document.getElementById("endpoints"));
  renderSchemas(spec, document.getElementById("schemas"));
}

main().catch((e) => {
  document.getElementById("intro").appendChild(el("p", null, "Could not load /openapi.json: " + e));
});
