// The bench loads test/helpers (TypeScript, through Node's type stripping), which import src/*.js: map a .js
// specifier that does not exist next to a .ts importer to the .ts source.
import {registerHooks} from 'node:module';

let registered = false;

export function allowTsImports() {
  if (registered) return;
  registered = true;
  registerHooks({
    resolve(specifier, context, next) {
      try {
        return next(specifier, context);
      } catch (error) {
        if (specifier.endsWith('.js') && context.parentURL?.endsWith('.ts')) return next(specifier.replace(/\.js$/, '.ts'), context);
        throw error;
      }
    },
  });
}
