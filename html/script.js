// Shows the visitor's local time in the footer (#local-time), if there is one.
"use strict";

(function () {
  var slot = document.getElementById("local-time");
  if (slot) {
    slot.textContent = new Date().toLocaleString();
  }
})();
