// Swagger UI on the API documentation page (templates/diagnosis/api_docs.html): drf-
// spectacular's setup script (drf_spectacular/swagger_ui.js) as a file, so the page needs no
// inline script. The view's values come from the #swagger-ui element's data- attributes.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle === "undefined") return;
  var settings = JSON.parse(root.getAttribute("data-settings") || "{}");
  var schemaAuthNames = JSON.parse(root.getAttribute("data-schema-auth-names") || "[]");
  var csrfHeader = root.getAttribute("data-csrf-header");
  var csrfToken = root.getAttribute("data-csrf-token");
  var schemaAuthFailed = false;
  var ui = null;

  function reload() {
    schemaAuthFailed = false;
    setTimeout(function () { ui.specActions.download(); });
  }
  function wrap(original) {
    return function () { reload(); return original.apply(null, arguments); };
  }
  // A change of the credentials given in "Authorize" fetches the schema again with them.
  var reloadSchemaOnAuthChange = function () {
    return { statePlugins: { auth: { wrapActions: {
      authorizeOauth2: wrap, authorize: wrap, logout: wrap
    } } } };
  };

  function isSchemaUrl(url) {
    return ui !== null && url === new URL(ui.getConfigs().url, document.baseURI).href;
  }
  function responseInterceptor(response) {
    if (!response.ok && isSchemaUrl(response.url) && !schemaAuthFailed) {
      // Retry once without the credentials, which the schema refused.
      schemaAuthFailed = true;
      setTimeout(function () { ui.specActions.download(); });
    }
    return response;
  }
  function authorized() {
    if (ui === null) return undefined;
    var state = ui.getState().get("auth").get("authorized");
    if (state === undefined || Object.keys(state.toJS()).length === 0) return undefined;
    return state.toJS();
  }
  function injectAuthCredentials(request) {
    var given = authorized();
    if (given === undefined) return;
    for (var i = 0; i < schemaAuthNames.length; i++) {
      var auth = given[schemaAuthNames[i]];
      if (auth === undefined || auth.schema === undefined) continue;
      var schema = auth.schema;
      if (schema.type === "http" && schema.scheme === "bearer") {
        request.headers.Authorization = "Bearer " + auth.value;
      } else if (schema.type === "http" && schema.scheme === "basic") {
        request.headers.Authorization = "Basic " + btoa(auth.value.username + ":" + auth.value.password);
      } else if (schema.type === "apiKey" && schema.in === "header") {
        request.headers[schema.name] = auth.value;
      } else {
        continue;
      }
      return;
    }
  }
  function requestInterceptor(request) {
    if (request.loadSpec && schemaAuthNames.length > 0 && !schemaAuthFailed) {
      injectAuthCredentials(request);
    }
    // "Try it out" runs with this browser's session: Django wants the CSRF token on writes.
    if (["GET", undefined].indexOf(request.method) === -1 && request.credentials === "same-origin") {
      request.headers[csrfHeader] = csrfToken;
    }
    return request;
  }

  ui = SwaggerUIBundle(Object.assign({
    url: root.getAttribute("data-schema-url"),
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    plugins: schemaAuthNames.length > 0 ? [reloadSchemaOnAuthChange] : [],
    layout: "BaseLayout",
    requestInterceptor: requestInterceptor,
    responseInterceptor: responseInterceptor
  }, settings));
})();
