// Renders openapi.json as a readable page, with nothing loaded from elsewhere (FastAPI's default /docs needs a CDN).
"use strict";

(async () => {
  const status = document.getElementById("docs-status");
  const list = document.getElementById("endpoints");
  let spec;
  try {
    const response = await fetch("openapi.json", { cache: "no-store" });
    spec = await response.json();
  } catch {
    status.textContent = "Cannot reach the skinscan server to read openapi.json.";
    return;
  }
  document.getElementById("api-version").textContent = `${spec.info.title} ${spec.info.version} · OpenAPI ${spec.openapi}`;
  document.getElementById("api-description").textContent = spec.info.description || "";
  for (const code of document.querySelectorAll("pre code")) {
    code.textContent = code.textContent.replaceAll("http://127.0.0.1:9889", location.origin);
  }

  const el = (tag, props = {}, children = []) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  };
  const ref = (schema) => {
    let s = schema || {};
    while (s.$ref) s = spec.components.schemas[s.$ref.split("/").pop()] || {};
    return s;
  };
  const typeOf = (schema) => {
    const s = ref(schema);
    if (schema && schema.$ref) return schema.$ref.split("/").pop();
    if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
    if (s.type === "array") return `array of ${typeOf(s.items)}`;
    if (s.format === "binary" || s.contentMediaType) return "file";
    return s.type || "any";
  };
  const table = (headers, rows) => el("table", {}, [
    el("thead", {}, [el("tr", {}, headers.map((h) => el("th", { textContent: h })))]),
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) => el("td", { textContent: cell }))))),
  ]);

  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const detail = el("div", { className: "detail" });
      if (op.description) detail.append(el("p", { textContent: op.description }));
      const params = op.parameters || [];
      if (params.length) {
        detail.append(el("h3", { textContent: "Parameters" }),
          table(["name", "in", "type", "description"],
            params.map((p) => [p.name, p.in, typeOf(p.schema), p.description || ""])));
      }
      const form = op.requestBody && op.requestBody.content && op.requestBody.content["multipart/form-data"];
      if (form) {
        const props = ref(form.schema).properties || {};
        detail.append(el("h3", { textContent: "Body (multipart/form-data)" }),
          table(["field", "type"], Object.entries(props).map(([name, s]) => [name, typeOf(s)])));
      }
      const responses = Object.entries(op.responses || {}).map(([code, r]) => {
        const json = r.content && r.content["application/json"];
        return [code, r.description || "", json && json.schema ? typeOf(json.schema) : ""];
      });
      detail.append(el("h3", { textContent: "Responses" }), table(["status", "meaning", "body"], responses));
      const ok = op.responses && op.responses["200"] && op.responses["200"].content;
      const schema = ok && ok["application/json"] && ref(ok["application/json"].schema);
      if (schema && schema.properties) {
        detail.append(el("h3", { textContent: "Fields of the 200 answer" }),
          table(["field", "type", "description"],
            Object.entries(schema.properties).map(([name, s]) => [name, typeOf(s), ref(s).description || s.description || ""])));
      }
      list.append(el("details", { className: "endpoint" }, [
        el("summary", {}, [
          el("span", { className: `method ${method}`, textContent: method.toUpperCase() }),
          el("span", { className: "path", textContent: path }),
          el("span", { className: "summary", textContent: op.summary || "" }),
        ]),
        detail,
      ]));
    }
  }
  status.textContent = `${list.children.length} endpoints.`;
})();
