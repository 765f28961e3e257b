// Swagger UI with the token the dashboard signed in with (a file, not an inline script: the CSP allows
// scripts from the service only)
const token = sessionStorage.getItem("medsight-token");
if (!token) document.getElementById("need-token").hidden = false;
else SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  requestInterceptor: (req) => {
    if (!req.headers.Authorization) req.headers.Authorization = "Bearer " + token;
    return req;
  },
});
