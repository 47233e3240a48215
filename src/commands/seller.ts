/**
 * The commands a seller reaches for while keymailer runs for years: `orders`, `resend`, `check`
 * and `preview`. Each file holds one command with its --help and exit codes; this one only adds
 * them to the program, so cli.ts needs a single line.
 */
import type { Command } from 'commander';
import { registerCheckCommand } from './check';
import { registerOrdersCommand } from './orders';
import { registerPreviewCommand } from './preview';
import { registerResendCommand } from './resend';

export function registerSellerCommands(program: Command): void {
  registerOrdersCommand(program);
  registerResendCommand(program);
  registerCheckCommand(program);
  registerPreviewCommand(program);
}
