// Starts Swagger UI on the schema this service serves. A file, not an inline script: the
// docs page's Content-Security-Policy allows scripts from this origin only.
"use strict";
(() => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.schema,
    domNode: root,
    deepLinking: true,
    validatorUrl: null, // no badge from validator.swagger.io: nothing leaves this origin
  });
})();
