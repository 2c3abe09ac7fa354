// The site shell's behaviour, for every page: the phone menu, tables readable on a phone, copy
// buttons, and focus on a form's first error. (Charts live in perfpilot.js.)
(function () {
  "use strict";

  // Phone menu: a real button that says whether the menu is open; Escape closes it.
  function setUpMenu() {
    var button = document.querySelector(".nav-toggle");
    if (!button) return;
    var menu = document.getElementById(button.getAttribute("aria-controls"));
    function setOpen(open) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
    }
    button.addEventListener("click", function () {
      setOpen(button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        button.focus();
      }
    });
    if (menu) {
      menu.addEventListener("focusout", function (event) {
        // Tabbing out of the open menu (past its last link) closes it, as a menu should.
        if (event.relatedTarget && !menu.contains(event.relatedTarget) && event.relatedTarget !== button) setOpen(false);
      });
    }
  }

  // On a phone every table row becomes a small card: each cell is labelled with its column's
  // header (the CSS shows data-label), so no column, and no Ack or Apply button, is scrolled away.
  function labelTableCells(root) {
    root.querySelectorAll("table.table").forEach(function (table) {
      // Only this table's own header and rows: a table nested in a cell is labelled by its own header.
      var headers = Array.prototype.map.call(table.querySelectorAll(":scope > thead > tr > th"), function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll(":scope > tbody > tr").forEach(function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.children, function (cell) {
          var span = cell.colSpan || 1;
          if (span === 1 && headers[column] && !cell.hasAttribute("data-label")) {
            cell.setAttribute("data-label", headers[column]);
          }
          column += span;
        });
      });
    });
  }

  // <button data-copy="#selector">: copies the element's text and says so next to the button.
  function copyFrom(button) {
    var source = document.querySelector(button.getAttribute("data-copy"));
    var feedback = button.parentNode.querySelector(".copy-feedback");
    function say(text) {
      if (feedback) feedback.textContent = text;
    }
    if (!source) return;
    if (!navigator.clipboard) {
      say("Copying needs HTTPS here: select the token and copy it.");
      return;
    }
    navigator.clipboard.writeText(source.textContent.trim()).then(
      function () { say("Copied to the clipboard."); },
      function () { say("The browser refused to copy: select the token and copy it."); }
    );
  }

  // A form answered with errors: focus its error summary (or first invalid field), so keyboard
  // and screen-reader users land where the problems are listed.
  function focusFirstError(root) {
    var target = root.querySelector("[data-error-summary]") || root.querySelector("[aria-invalid=true]");
    if (target) target.focus();
  }

  // A URL field whose example depends on the chosen kind (the add-target form): the placeholder
  // follows the kind select of the same form.
  function showUrlExample(input) {
    var kind = input.form && input.form.elements.namedItem("kind");
    if (!kind) return;
    var examples = JSON.parse(input.getAttribute("data-url-examples"));
    input.placeholder = examples[kind.value] || "";
  }
  function setUpUrlExamples(root) {
    root.querySelectorAll("input[data-url-examples]").forEach(showUrlExample);
  }
  document.addEventListener("change", function (event) {
    if (event.target.name !== "kind" || !event.target.form) return;
    var input = event.target.form.querySelector("input[data-url-examples]");
    if (input) showUrlExample(input);
  });

  // Fields that only some kinds read (data-for-kinds="kind kind…" on the control; data-kind-field names
  // the select it follows, with the form's prefix): shown for those kinds only, as in the alert and
  // scaling rule forms. Hidden fields keep their values and are still sent; without script every
  // field shows, with help saying which kinds read it.
  function showFieldsOfKind(form) {
    form.querySelectorAll("[data-for-kinds]").forEach(function (control) {
      var kind = form.elements.namedItem(control.getAttribute("data-kind-field"));
      var field = control.closest(".form-field");
      if (!kind || !field) return;
      field.hidden = control.getAttribute("data-for-kinds").split(" ").indexOf(kind.value) < 0;
    });
  }
  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (event.target.tagName === "SELECT" && form && form.querySelector("[data-for-kinds]")) showFieldsOfKind(form);
  });
  function setUpFieldsOfKind(root) {
    root.querySelectorAll("form").forEach(function (form) {
      if (form.querySelector("[data-for-kinds]")) showFieldsOfKind(form);
    });
  }

  // Controls that submit their form when changed (the Content-Security-Policy allows no inline handlers):
  // data-autosubmit, and data-clear="id" empties another field first.
  document.addEventListener("change", function (event) {
    var control = event.target;
    if (!control.hasAttribute || !control.hasAttribute("data-autosubmit") || !control.form) return;
    var clear = control.getAttribute("data-clear");
    if (clear && document.getElementById(clear)) document.getElementById(clear).value = "";
    control.form.submit();
  });

  // Polling that waits while nobody looks (data-poll-when-visible) or while the user types inside the
  // polled part (data-poll-unless-focus-within): htmx trigger filters would need eval, which the
  // Content-Security-Policy forbids.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (!elt || !elt.hasAttribute) return;
    if (elt.hasAttribute("data-poll-when-visible") && document.visibilityState !== "visible") {
      event.preventDefault();
    } else if (elt.hasAttribute("data-poll-unless-focus-within") && elt.querySelector("input:focus")) {
      event.preventDefault();
    }
  });

  // Forms that ask before they submit (data-confirm="question"), e.g. a delete.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) copyFrom(button);
  });
  document.addEventListener("DOMContentLoaded", function () {
    setUpMenu();
    setUpUrlExamples(document);
    setUpFieldsOfKind(document);
    labelTableCells(document);
    focusFirstError(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    labelTableCells(document);
    setUpUrlExamples(document);
    setUpFieldsOfKind(document);
    focusFirstError(event.detail.elt || document);
  });
})();
