// The new-run page: choosing another pipeline reloads the form for it (the page's CSP allows no inline handlers).
"use strict";
(function () {
  for (const select of document.querySelectorAll("select[data-submit-on-change]")) {
    select.addEventListener("change", () => select.form.submit());
  }
})();
