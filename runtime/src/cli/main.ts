#!/usr/bin/env node
// Placeholder entry until cli/ lands: `mailinfra version`.
console.log("mailinfra 0.1.0");
