const {composeMail}=require('/work/main/dist/src/deliver/render.js');
const nm=require('nodemailer');
const parts={from:'Shop <shop@example.com>',to:{name:'Jane Buyer',address:'jane@example.org'},subject:'Your license for Widget Pro',text:'Hello Jane,\n\nthank you for buying Widget Pro.\n\nYour serial: 8F2B-D544-C576-4FFA-219F-B0D2-E4BC-9137\n\nBest,\nShop\n'.repeat(3),html:'<p>Hello Jane,</p><p>Your serial: <b>8F2B-D544</b></p>'.repeat(5),messageId:'<abc.km@example.com>',date:new Date()};
(async()=>{
 for(let r=0;r<3;r++){let t=performance.now();const c0=process.cpuUsage();await Promise.all(Array.from({length:2000},()=>composeMail(parts)));const c=process.cpuUsage(c0);console.log('composeMail x2000 parallel',((performance.now()-t)/2000*1000).toFixed(0),'us wall', ((c.user+c.system)/2000).toFixed(0),'us cpu');}
 const tr=nm.createTransport({streamTransport:true,buffer:true});
 const raw=await composeMail(parts);
 for(let r=0;r<3;r++){let t=performance.now();const c0=process.cpuUsage();for(let i=0;i<2000;i++)await tr.sendMail({envelope:{from:'a@b.c',to:['d@e.f']},raw});const c=process.cpuUsage(c0);console.log('streamTransport raw',((performance.now()-t)/2000*1000).toFixed(0),'us wall',((c.user+c.system)/2000).toFixed(0),'us cpu');}
})();
