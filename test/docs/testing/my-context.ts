// The README's MyContext (the sample's copy of it, which also augments ContextRegistry for the test project).
export { MyContext } from '../../../sample/my-context.js';
